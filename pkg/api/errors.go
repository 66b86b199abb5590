package api

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to exactly one HTTP status in [codeStatus]; the
// server writes errors through that table and the SDK reads them back
// through it, so a code survives the round trip.
const (
	CodeInvalid      = "invalid"      // the request is malformed or breaks a rule
	CodeUnauthorized = "unauthorized" // no, or an unacceptable, request signature or identity
	CodeForbidden    = "forbidden"    // the caller may not do this
	CodeNotFound     = "not_found"    // no such user, room, key or blob
	CodeConflict     = "conflict"     // the state changed under the request (epoch moved, already exists)
	CodeTooLarge     = "too_large"    // body over its ceiling
	CodeUnsupported  = "unsupported"  // wrong content type
	CodeRateLimited  = "rate_limited" // slow down
	CodeUnavailable  = "unavailable"  // shutting down or a dependency is down
	CodeInternal     = "internal"     // a bug or an unexpected failure; details only in the server log
	CodeMethod       = "method_not_allowed"
	// CodeRevoked is a forbidden call by a revoked user: the SDK tells the
	// user so instead of a plain refusal. It shares 403 with forbidden,
	// which answers a response with no code of its own.
	CodeRevoked = "revoked"
)

// codeStatus is written in numbers so that the package, which the store
// contract and every backend import, does not import net/http.
var codeStatus = map[string]int{
	CodeInvalid:      400, // Bad Request
	CodeUnauthorized: 401, // Unauthorized
	CodeForbidden:    403, // Forbidden
	CodeRevoked:      403, // Forbidden
	CodeNotFound:     404, // Not Found
	CodeMethod:       405, // Method Not Allowed
	CodeConflict:     409, // Conflict
	CodeTooLarge:     413, // Content Too Large
	CodeUnsupported:  415, // Unsupported Media Type
	CodeRateLimited:  429, // Too Many Requests
	CodeInternal:     500, // Internal Server Error
	CodeUnavailable:  503, // Service Unavailable
}

// Error is the one error type of the control plane. Its Message is meant for
// the user and says what to do next.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an [Error] with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, [CodeInternal] when err is not an [Error],
// and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err is an [Error] with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// HTTPStatus returns the status for a code; unknown codes are 500.
func HTTPStatus(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return codeStatus[CodeInternal]
}

// CodeForStatus is the inverse of [HTTPStatus], for responses that carry no
// code of their own (a proxy's 502, say).
func CodeForStatus(status int) string {
	for c, s := range codeStatus {
		if s == status && c != CodeRevoked {
			return c
		}
	}
	if status >= 400 && status < 500 {
		return CodeInvalid
	}
	return CodeInternal
}
