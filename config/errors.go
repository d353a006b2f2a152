package config

import (
	"cmp"
	"errors"
	"slices"
	"strings"
)

// Errors is every problem found in one configuration, in file order
// (errors tied to no line last). Load, Parse and Validate return it, so
// that a user fixes a file in one pass, not one error per run. errors.As
// finds its first *Error.
type Errors []*Error

// Error is one line per problem.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each *Error.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// errList collects the errors of one validation pass.
type errList []*Error

// add records a problem with key.
func (l *errList) add(key, msg string) { *l = append(*l, &Error{Key: key, Msg: msg}) }

// addErr records err, flattening Errors; an error that is no *Error is
// recorded with its message and no key.
func (l *errList) addErr(err error) {
	var es Errors
	var e *Error
	switch {
	case err == nil:
	case errors.As(err, &es):
		*l = append(*l, es...)
	case errors.As(err, &e):
		*l = append(*l, e)
	default:
		*l = append(*l, &Error{Msg: err.Error()})
	}
}

// err is nil without errors, else Errors.
func (l errList) err() error {
	if len(l) == 0 {
		return nil
	}
	return Errors(l)
}

// sortByLine orders errors by line, keeping the validation order of
// errors on one line, with errors tied to no line last.
func sortByLine(es Errors) {
	slices.SortStableFunc(es, func(a, b *Error) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return cmp.Compare(la, lb)
	})
}
