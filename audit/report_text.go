package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// texts are the words of a report in one language. Every format takes its
// words from here, so that the PDF, the spreadsheet and the web page of one
// report say the same thing.
type texts struct {
	lang string

	status       map[string]string
	airingStatus map[broadcast.Status]string
	kind         map[broadcast.Kind]string
	reasons      map[string]string
	cancelledBy  string // "cancelled by <name>", as api/airings.go writes it
	noReason     map[broadcast.Status]string
	devices      func(n int) string

	title, republic, motto, number string
	headingOf                      func(name string) string
	noIssuer                       string
	months                         [12]string
	firstHalf, secondHalf, year    string
	unitLine                       string
	requirement                    string
	rule                           string
	generated                      string
	page                           string

	sectionSummary, sectionUnits, sectionExceptions string
	sectionAddendum, addendumIntro                  string
	noExceptions                                    string
	summaryLine                                     string

	colNo, colUnit, colStation, colCode, colStations, colRequired, colAired    string
	colPending, colMonthsCompliant, colStatus, colCoverage, colDevices         string
	colMonth, colTime, colKind, colAiring, colReason, colParent, colStatusCode string
	total, subtotal, otherUnit                                                 string

	recipients, recipientsList, preparedBy, signHint string

	sheetReport, sheetDetail string
}

var vietnamese = &texts{
	lang: LangVI,
	status: map[string]string{
		Compliant: "Đạt", InProgress: "Đang thực hiện", AtRisk: "Có nguy cơ không đạt", NonCompliant: "Không đạt",
	},
	airingStatus: map[broadcast.Status]string{
		broadcast.StatusMissed: "Không phát được", broadcast.StatusFailed: "Phát lỗi", broadcast.StatusCancelled: "Đã hủy",
	},
	kind: map[broadcast.Kind]string{
		broadcast.KindPremiere: "Phát lần đầu", broadcast.KindReplay: "Phát lại", broadcast.KindMakeup: "Phát bù",
	},
	reasons: map[string]string{
		broadcast.ReasonNoFinish:          "Không nhận được báo cáo phát xong trước thời hạn",
		broadcast.ReasonShortPlay:         "Phát không đủ thời lượng chương trình",
		broadcast.ReasonWrongAudio:        "Phát sai tệp âm thanh (không khớp mã kiểm tra)",
		broadcast.ReasonLateStart:         "Phát lệch giờ so với lịch",
		"expired":                         "Thiết bị nhận lịch quá muộn, đã quá thời hạn phát",
		"power":                           "Mất điện khi đang phát",
		"download_failed":                 "Không tải được tệp âm thanh",
		"checksum_mismatch":               "Tệp âm thanh tải về bị hỏng (sai mã kiểm tra)",
		"player_error":                    "Thiết bị phát bị lỗi",
		"other":                           "Thiết bị báo lỗi khác",
		"cancelled":                       "Buổi phát đã bị hủy",
		"preempted":                       "Bị ngắt để phát bản tin khẩn cấp",
		"withdrawn":                       "Chương trình đã bị rút",
		broadcast.ReasonPlayedAfterCancel: "Thiết bị vẫn phát sau khi buổi phát đã bị hủy (không được tính)",
	},
	cancelledBy: "Bị hủy bởi %s",
	noReason: map[broadcast.Status]string{
		broadcast.StatusMissed:    "Không phát",
		broadcast.StatusFailed:    "Không đủ thiết bị phát thành công",
		broadcast.StatusCancelled: "Buổi phát đã bị hủy",
	},
	devices: func(n int) string { return fmt.Sprintf("%d thiết bị", n) },

	title:     "BÁO CÁO KẾT QUẢ PHÁT SÓNG CHƯƠNG TRÌNH CHUYỂN ĐỔI SỐ",
	republic:  "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
	motto:     "Độc lập - Tự do - Hạnh phúc",
	number:    "Số:        /BC-UBND",
	headingOf: func(name string) string { return "UBND " + strings.ToUpper(name) },
	noIssuer:  "HỆ THỐNG ĐÀI TRUYỀN THANH CƠ SỞ",
	months:    [12]string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"},
	firstHalf: "6 tháng đầu năm %d", secondHalf: "6 tháng cuối năm %d", year: "Năm %d",
	unitLine:    "Đơn vị báo cáo: %s (mã %s)",
	requirement: "Yêu cầu: mỗi đài truyền thanh cơ sở phát chương trình ít nhất %d lần mỗi tháng (1 lần phát mới và %d lần phát lại).",
	rule:        "Đài đạt yêu cầu của kỳ báo cáo khi đạt yêu cầu ở tất cả các tháng trong kỳ. Tỷ lệ thiết bị là tỷ lệ bình quân số cụm loa đã phát trên số cụm loa đang hoạt động.",
	generated:   "Tạo bởi loaxa lúc %s",
	page:        "Trang %d/%s",

	sectionSummary: "I. TỔNG HỢP", sectionUnits: "II. KẾT QUẢ THEO ĐƠN VỊ", sectionExceptions: "III. CÁC BUỔI PHÁT KHÔNG THÀNH CÔNG",
	sectionAddendum: "IV. PHỤ LỤC: CHỨNG CỨ NHẬN SAU KHI NIÊM PHONG",
	addendumIntro:   "Số liệu các tháng đã niêm phong ở trên là số liệu đã niêm phong. Chứng cứ nhận sau khi niêm phong được ghi vào nhật ký phát sóng và nêu dưới đây, không làm thay đổi số liệu đó.",
	noExceptions:    "Không có buổi phát nào bị bỏ lỡ, lỗi hoặc bị hủy.",
	summaryLine:     "Tổng số %d đài: đạt %d (%s); đang thực hiện %d; có nguy cơ không đạt %d; không đạt %d. Đã phát %d/%d lần theo yêu cầu.",

	colNo: "STT", colUnit: "Đơn vị", colStation: "Đài", colCode: "Mã", colStations: "Số đài", colRequired: "Yêu cầu", colAired: "Đã phát",
	colPending: "Còn chờ", colMonthsCompliant: "Số tháng đạt", colStatus: "Trạng thái", colCoverage: "Tỷ lệ thiết bị", colDevices: "Số thiết bị",
	colMonth: "Tháng", colTime: "Thời gian", colKind: "Lần phát", colAiring: "Mã buổi phát", colReason: "Lý do", colParent: "Đơn vị cấp trên", colStatusCode: "Mã trạng thái",
	total: "Tổng cộng", subtotal: "Cộng", otherUnit: "(Chưa xác định)",

	recipients: "Nơi nhận:", recipientsList: "- Như trên;\n- Lưu: VT.", preparedBy: "NGƯỜI LẬP BÁO CÁO", signHint: "(Ký, ghi rõ họ tên)",

	sheetReport: "Báo cáo", sheetDetail: "Chi tiết",
}

var english = &texts{
	lang: LangEN,
	status: map[string]string{
		Compliant: "Compliant", InProgress: "In progress", AtRisk: "At risk", NonCompliant: "Non-compliant",
	},
	airingStatus: map[broadcast.Status]string{
		broadcast.StatusMissed: "Missed", broadcast.StatusFailed: "Failed", broadcast.StatusCancelled: "Cancelled",
	},
	kind: map[broadcast.Kind]string{
		broadcast.KindPremiere: "Premiere", broadcast.KindReplay: "Replay", broadcast.KindMakeup: "Make-up",
	},
	reasons: map[string]string{
		broadcast.ReasonNoFinish:          "No report of a finished play arrived before the deadline",
		broadcast.ReasonShortPlay:         "Less of the programme was played than required",
		broadcast.ReasonWrongAudio:        "A different audio file was played (checksum mismatch)",
		broadcast.ReasonLateStart:         "Started too far from the scheduled time",
		"expired":                         "The device got the airing too late to play it",
		"power":                           "Power was lost during the play",
		"download_failed":                 "The audio could not be downloaded",
		"checksum_mismatch":               "The downloaded audio was corrupt (checksum mismatch)",
		"player_error":                    "The player failed",
		"other":                           "The device reported another fault",
		"cancelled":                       "The airing was cancelled",
		"preempted":                       "Interrupted by an emergency broadcast",
		"withdrawn":                       "The programme was withdrawn",
		broadcast.ReasonPlayedAfterCancel: "The device played it after it was cancelled (not counted)",
	},
	cancelledBy: "Cancelled by %s",
	noReason: map[broadcast.Status]string{
		broadcast.StatusMissed:    "Not aired",
		broadcast.StatusFailed:    "Too few devices aired it",
		broadcast.StatusCancelled: "The airing was cancelled",
	},
	devices: func(n int) string {
		if n == 1 {
			return "1 device"
		}
		return fmt.Sprintf("%d devices", n)
	},

	title:     "REPORT ON THE BROADCASTING OF THE DIGITAL TRANSFORMATION PROGRAMME",
	republic:  "SOCIALIST REPUBLIC OF VIETNAM",
	motto:     "Independence - Freedom - Happiness",
	number:    "No.        /BC-UBND",
	headingOf: func(name string) string { return "PEOPLE'S COMMITTEE OF " + strings.ToUpper(englishUnitName(name)) },
	noIssuer:  "COMMUNE RADIO NETWORK",
	months:    [12]string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
	firstHalf: "First half of %d", secondHalf: "Second half of %d", year: "Year %d",
	unitLine:    "Reporting unit: %s (code %s)",
	requirement: "Requirement: every commune radio station airs the programme at least %d times a month (1 premiere and %d replays).",
	rule:        "A station is compliant for the period when it is compliant in every month of it. Device coverage is the mean share of a station's active loudspeaker clusters that aired each airing.",
	generated:   "Generated by loaxa at %s",
	page:        "Page %d/%s",

	sectionSummary: "I. SUMMARY", sectionUnits: "II. RESULTS BY UNIT", sectionExceptions: "III. AIRINGS THAT DID NOT AIR",
	sectionAddendum: "IV. ADDENDUM: EVIDENCE RECEIVED AFTER THE SEAL",
	addendumIntro:   "The figures of sealed months above are the sealed figures. Evidence received after a month was sealed is in the as-run log and listed below; it does not change them.",
	noExceptions:    "No airing was missed, failed or cancelled.",
	summaryLine:     "%d stations: %d compliant (%s); %d in progress; %d at risk; %d non-compliant. %d of %d required airings aired.",

	colNo: "No.", colUnit: "Unit", colStation: "Station", colCode: "Code", colStations: "Stations", colRequired: "Required", colAired: "Aired",
	colPending: "Pending", colMonthsCompliant: "Months compliant", colStatus: "Status", colCoverage: "Device coverage", colDevices: "Devices",
	colMonth: "Month", colTime: "Time", colKind: "Airing", colAiring: "Airing id", colReason: "Reason", colParent: "Parent unit", colStatusCode: "Status code",
	total: "Total", subtotal: "Subtotal", otherUnit: "(Unknown)",

	recipients: "Recipients:", recipientsList: "- As above;\n- Archive.", preparedBy: "PREPARED BY", signHint: "(Signature and full name)",

	sheetReport: "Report", sheetDetail: "Detail",
}

func textsFor(lang string) *texts {
	if lang == LangEN {
		return english
	}
	return vietnamese
}

// ReasonText explains a reason code of an airing or of a device (no_finish,
// power, download_failed…) as a sentence in lang. A code it does not know is
// returned as it is, so that nothing the evidence says is hidden.
func ReasonText(reason, lang string) string {
	t := textsFor(lang)
	if s, ok := t.reasons[reason]; ok {
		return s
	}
	if who, ok := strings.CutPrefix(reason, "cancelled by "); ok {
		return fmt.Sprintf(t.cancelledBy, who)
	}
	return reason
}

// ExceptionText explains why an airing did not air: the scheduler's reason,
// then what the devices reported, e.g. "Phát lỗi: Mất điện khi đang phát
// (2 thiết bị)".
func ExceptionText(e Exception, lang string) string {
	t := textsFor(lang)
	s := t.noReason[e.Status]
	if e.Reason != "" {
		s = ReasonText(e.Reason, lang)
	}
	if len(e.Causes) == 0 {
		return s
	}
	causes := make([]string, len(e.Causes))
	for i, c := range e.Causes {
		causes[i] = fmt.Sprintf("%s (%s)", ReasonText(c.Reason, lang), t.devices(c.Devices))
	}
	return s + ": " + strings.Join(causes, "; ")
}

func (t *texts) statusLabel(s string) string {
	if l, ok := t.status[s]; ok {
		return l
	}
	return s
}

func (t *texts) airingStatusLabel(s broadcast.Status) string {
	if l, ok := t.airingStatus[s]; ok {
		return l
	}
	return string(s)
}

func (t *texts) kindLabel(k broadcast.Kind) string {
	if l, ok := t.kind[k]; ok {
		return l
	}
	return string(k)
}

// periodTitle says the period as a document's title does: "Tháng 12/2026",
// "6 tháng cuối năm 2026", "Năm 2026".
func (t *texts) periodTitle(p broadcast.Period) string {
	name := p.Name
	switch {
	case len(name) == 7 && name[4:6] == "-H":
		y, _ := strconv.Atoi(name[:4])
		if name[6] == '1' {
			return fmt.Sprintf(t.firstHalf, y)
		}
		return fmt.Sprintf(t.secondHalf, y)
	case len(name) == 4:
		y, _ := strconv.Atoi(name)
		return fmt.Sprintf(t.year, y)
	case len(name) == 7:
		if m, err := time.Parse("2006-01", name); err == nil {
			return t.monthTitle(m.Year(), int(m.Month()))
		}
	}
	return name
}

func (t *texts) monthTitle(y, m int) string {
	if t.lang == LangEN {
		return fmt.Sprintf("%s %d", t.months[m-1], y)
	}
	return fmt.Sprintf("Tháng %d/%d", m, y)
}

// dateLine is the place and date under the national motto. Decree
// 30/2020/NĐ-CP writes days below 10 and the months January and February
// with a leading zero.
func (t *texts) dateLine(place string, at time.Time) string {
	if t.lang == LangEN {
		d := at.Format("2 January 2006")
		if place == "" {
			return d
		}
		return place + ", " + d
	}
	month := strconv.Itoa(int(at.Month()))
	if at.Month() <= 2 {
		month = "0" + month
	}
	d := fmt.Sprintf("ngày %02d tháng %s năm %d", at.Day(), month, at.Year())
	if place == "" {
		return "Ngày" + strings.TrimPrefix(d, "ngày")
	}
	return place + ", " + d
}

// timeLabel is an instant in the report's zone.
func (t *texts) timeLabel(at time.Time, loc *time.Location) string {
	if t.lang == LangEN {
		return at.In(loc).Format("2006-01-02 15:04")
	}
	return at.In(loc).Format("15:04 02/01/2006")
}

// percent writes a share with one decimal, with the decimal comma in
// Vietnamese.
func (t *texts) percent(share float64) string {
	s := strconv.FormatFloat(share*100, 'f', 1, 64) + "%"
	if t.lang == LangVI {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}

// heading is the issuing body's block at the top left: the province's
// People's Committee, then the unit reported on when it is another.
func (t *texts) heading(r Report) []string {
	if r.Issuer.Name == "" {
		if r.Unit.Name != "" {
			return []string{t.noIssuer, strings.ToUpper(r.Unit.Name)}
		}
		return []string{t.noIssuer}
	}
	lines := []string{t.headingOf(r.Issuer.Name)}
	if r.Unit.Name != "" && r.Unit.Code != r.Issuer.Code {
		lines = append(lines, strings.ToUpper(r.Unit.Name))
	}
	return lines
}

func (t *texts) unitName(u UnitRef) string {
	switch {
	case u.Name != "":
		return u.Name
	case u.Code != "":
		return u.Code
	}
	return t.otherUnit
}

// requirementLine states the plan's rule from the rows themselves, so that
// it says what was judged, whatever the policy's min_replays.
func (t *texts) requirementLine(r Report) string {
	for _, row := range r.Rows {
		if row.Required > 0 {
			return fmt.Sprintf(t.requirement, row.Required, row.Required-1)
		}
	}
	return ""
}

func (t *texts) summary(tl Tally) string {
	share := 0.0
	if tl.Stations > 0 {
		share = float64(tl.Compliant) / float64(tl.Stations)
	}
	return fmt.Sprintf(t.summaryLine, tl.Stations, tl.Compliant, t.percent(share), tl.InProgress, tl.AtRisk, tl.NonCompliant, tl.Aired, tl.Required)
}

// location is the zone of every time the report shows: the zone it was
// made in.
func (r Report) location() *time.Location { return r.GeneratedAt.Location() }

// englishUnitName puts a unit's type after its name in English, as English
// documents of Vietnamese bodies do: "Tỉnh Thanh Hóa" is "Thanh Hóa
// Province". Names are kept with their diacritics; a type it does not know
// leaves the name as it is.
func englishUnitName(name string) string {
	for _, ty := range []struct{ vi, en string }{
		{"Tỉnh ", "Province"}, {"Thành phố ", "City"}, {"Thị xã ", "Town"}, {"Huyện ", "District"},
		{"Quận ", "District"}, {"Phường ", "Ward"}, {"Thị trấn ", "Township"}, {"Xã ", "Commune"},
	} {
		if rest, ok := strings.CutPrefix(name, ty.vi); ok {
			return rest + " " + ty.en
		}
	}
	return name
}
