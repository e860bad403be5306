package audit

import (
	"bufio"
	"html/template"
	"io"
	"strings"
)

// The page is self-contained — styles inline, no fonts, scripts or images
// fetched — so that it prints the same offline, from an archive, or from a
// console that must not load anything from outside the daemon (docs/api.md).
// html/template escapes every name that comes from the unit tree.
var reportHTML = template.Must(template.New("report").Funcs(template.FuncMap{
	"align": func(a string) string {
		switch a {
		case "R":
			return "r"
		case "C":
			return "c"
		}
		return "l"
	},
	"lines": func(s string) []string { return strings.Split(s, "\n") },
	"last":  func(i int, s []string) bool { return i == len(s)-1 },
}).Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} — {{.Period}}</title>
<style>
@page { size: A4; margin: 20mm 15mm 20mm 25mm; }
body { font-family: "Times New Roman", "DejaVu Serif", serif; font-size: 13pt; color: #000; max-width: 170mm; margin: 1em auto; line-height: 1.3; }
header { display: flex; justify-content: space-between; align-items: flex-start; gap: 1em; }
header .issuer, header .nation { text-align: center; }
header .issuer { width: 40%; } header .nation { width: 58%; }
header b, header strong { display: block; }
header .motto { text-decoration: underline; font-weight: bold; }
.number { margin-top: .4em; }
.date { font-style: italic; text-align: right; margin: .6em 0 1em; }
h1 { font-size: 14pt; text-align: center; margin: 1em 0 .2em; }
.period { text-align: center; font-weight: bold; margin: 0; }
.unitline { text-align: center; font-style: italic; margin: .2em 0 1em; }
h2 { font-size: 13pt; margin: 1.2em 0 .4em; }
h3 { font-size: 12pt; margin: 1em 0 .3em; }
table { border-collapse: collapse; width: 100%; font-size: 11pt; page-break-inside: auto; }
th, td { border: 1px solid #000; padding: 2px 4px; vertical-align: top; }
th { background: #e8e8e8; text-align: center; }
tr { page-break-inside: avoid; }
thead { display: table-header-group; }
tfoot td, .total td { font-weight: bold; }
td.r { text-align: right; } td.c { text-align: center; } td.l { text-align: left; }
.note { font-size: 12pt; text-align: justify; margin: .2em 0; }
footer { display: flex; justify-content: space-between; margin-top: 2em; page-break-inside: avoid; }
footer .recipients { font-size: 11pt; width: 45%; } footer .recipients b { font-style: italic; }
footer .sign { text-align: center; width: 50%; } footer .sign i { display: block; }
.generated { font-size: 9pt; font-style: italic; color: #444; margin-top: 3em; }
</style>
</head>
<body>
<header>
<div class="issuer">{{range $i, $l := .Heading}}{{if last $i $.Heading}}<b>{{$l}}</b>{{else}}<span>{{$l}}</span><br>{{end}}{{end}}
<div class="number">{{.Number}}</div></div>
<div class="nation"><b>{{.Republic}}</b><span class="motto">{{.Motto}}</span></div>
</header>
<p class="date">{{.DateLine}}</p>
<h1>{{.Title}}</h1>
<p class="period">{{.Period}}</p>
{{if .UnitLine}}<p class="unitline">{{.UnitLine}}</p>{{end}}
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
<h2>{{.SummaryTitle}}</h2>
{{template "table" .Summary}}
<p class="note">{{.SummaryLine}}</p>
<h2>{{.UnitsTitle}}</h2>
{{range .Units}}<h3>{{.Title}}</h3>
{{template "table" .}}{{end}}
<h2>{{.ExceptionsTitle}}</h2>
{{if .NoExceptions}}<p class="note">{{.NoExceptions}}</p>{{else}}{{template "table" .Exceptions}}{{end}}
{{if .Addendum}}<h2>{{.AddendumTitle}}</h2>
{{range .Addendum}}<p class="note">{{.}}</p>
{{end}}{{end}}<footer>
<div class="recipients"><b>{{.Recipients}}</b><br>{{range lines .RecipientsList}}{{.}}<br>{{end}}</div>
<div class="sign"><b>{{.PreparedBy}}</b><i>{{.SignHint}}</i></div>
</footer>
<p class="generated">{{.Generated}}</p>
</body>
</html>
{{define "table"}}<table>
<thead><tr>{{range .Columns}}<th>{{.Label}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr>{{range $i, $c := .}}<td class="{{align (index $.Columns $i).Align}}">{{$c.Text}}</td>{{end}}</tr>
{{end}}{{if .Total}}<tr class="total">{{range $i, $c := .Total}}<td class="{{align (index $.Columns $i).Align}}">{{$c.Text}}</td>{{end}}</tr>
{{end}}</tbody>
</table>
{{end}}`))

func writeReportHTML(w io.Writer, r Report, t *texts) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := reportHTML.Execute(bw, newDocument(r, t)); err != nil {
		return err
	}
	return bw.Flush()
}
