package broadcast

import (
	"errors"
	"fmt"
)

// Error codes are stable strings that clients may switch on; the HTTP layer
// maps them to status codes.
const (
	EInvalid      = "invalid"      // valid syntax, invalid values (422)
	EMalformed    = "malformed"    // unparseable request (400)
	ENotFound     = "not_found"    // 404
	EConflict     = "conflict"     // overlap, frozen, wrong state (409)
	EUnauthorized = "unauthorized" // no or bad credentials (401)
	EForbidden    = "forbidden"    // not allowed for this role or unit (403)
	ETooLarge     = "too_large"    // 413
	EUnsupported  = "unsupported"  // not an audio format we take (415)
	EInternal     = "internal"     // 500
	EUnavailable  = "unavailable"  // a dependency is not ready (503)
	ERateLimited  = "rate_limited" // too many failed attempts from this client: wait (429, Retry-After)
	ENoSpace      = "no_space"     // the daemon's disk is full (507)
)

// Error is an error a person can act on: a code for programs, a sentence for
// people and, where one input field is at fault, its name. Details that help
// only the operator of the daemon belong in the log, not here.
type Error struct {
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an *Error that blames one input field.
func FieldError(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or EInternal.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// IsNotFound reports whether err is, or wraps, an *Error with code ENotFound.
func IsNotFound(err error) bool { return err != nil && ErrorCode(err) == ENotFound }
