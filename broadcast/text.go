package broadcast

import "golang.org/x/text/unicode/norm"

// NFC is a name in Unicode normal form C. Vietnamese can be typed two ways
// (ệ as one code point, or e with two combining marks; macOS and some
// spreadsheets write the second): stored as it came, the same name would
// compare unequal to itself, a re-import would rewrite every unit, and a
// search would miss half the names. Every name is stored in NFC.
func NFC(s string) string {
	if norm.NFC.IsNormalString(s) {
		return s
	}
	return norm.NFC.String(s)
}
