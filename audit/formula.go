package audit

import "strings"

// SafeCell keeps a text cell of a CSV or XLSX file from being read as a
// formula: a unit named "=HYPERLINK(...)" (names come from an imported CSV
// and from operators) would otherwise run in the auditor's spreadsheet.
// Text starting with =, +, -, @ (or a tab or carriage return, which some
// spreadsheets skip before looking) gets a leading apostrophe, which
// spreadsheets show as text. Only text columns go through it: numbers are
// written as numbers.
func SafeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
