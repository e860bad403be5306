package main

import "github.com/loaxa/loaxa/audit"

// verifyBundle checks an evidence bundle offline with the same code an
// auditor can read in package audit; the CLI adds nothing of its own to
// the verdict, so that the two cannot disagree.
func verifyBundle(path string) (audit.Result, error) {
	return audit.VerifyBundleFile(path)
}
