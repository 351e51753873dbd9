package nft

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// ErrNotOwned reports a table that has ftpnft's name but was not created by
// ftpnft. ftpnft never changes or removes such a table.
var ErrNotOwned = errors.New("table exists but was not created by ftpnft (it lacks ftpnft's stamp)")

// ErrConcurrent reports that the ruleset kept changing while ftpnft read it
// and prepared its batch (another program, or another ftpnft, committed in
// between), so that ftpnft gave up instead of acting on a stale view. The
// kernel is as the other writers left it; run the command again.
var ErrConcurrent = errors.New("the ruleset changed while it was being read (another writer is active); nothing was changed, try again")

// Error is an error from the kernel or the netlink connection, with the
// operation that failed. Unwrap yields the cause, so callers can test
//
//	errors.Is(err, os.ErrPermission)      // not root / no CAP_NET_ADMIN
//	errors.Is(err, os.ErrNotExist)        // no such namespace, or the kernel lacks what a message refers to
//	errors.Is(err, errors.ErrUnsupported) // kernel lacks nf_tables or an operation
//	errors.Is(err, ErrNotOwned)           // a foreign table has ftpnft's name
//	errors.Is(err, ErrConcurrent)         // the ruleset kept changing underneath
//
// and any other errno, such as syscall.EINVAL.
type Error struct {
	Op    string // what was being done, e.g. "install"
	Table string // the table concerned, if any
	// Step names the message of the batch that the kernel rejected, e.g.
	// `batch message 7 of 31, add rule to chain input (comment "ftpnft:
	// ...")`; empty when the error concerns no single message.
	Step string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Table != "" {
		b.WriteString(" table inet " + e.Table)
	}
	if e.Step != "" {
		b.WriteString(": " + e.Step)
	}
	return fmt.Sprintf("%s: %v", b.String(), e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// kernelError is an errno the netlink library reported as text only.
type kernelError struct {
	err   error
	errno syscall.Errno
}

func (e *kernelError) Error() string { return e.err.Error() }
func (e *kernelError) Unwrap() []error {
	return []error{e.err, e.errno}
}

// unsupported marks errnos that mean "the kernel cannot do this".
type unsupported struct{ error }

func (u unsupported) Unwrap() []error { return []error{u.error, errors.ErrUnsupported} }

// classify makes the errno behind err visible to errors.Is. The netlink
// library wraps some kernel errors with %v, which loses the errno; its text
// is still there.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EPROTONOSUPPORT) {
		return unsupported{err}
	}
	for _, errno := range []syscall.Errno{syscall.EPERM, syscall.EACCES, syscall.EOPNOTSUPP, syscall.ENOENT, syscall.EEXIST} {
		if errors.Is(err, errno) {
			return err
		}
	}
	msg := err.Error()
	if strings.Contains(msg, syscall.EPROTONOSUPPORT.Error()) {
		return unsupported{&kernelError{err: err, errno: syscall.EPROTONOSUPPORT}}
	}
	for _, errno := range []syscall.Errno{syscall.EPERM, syscall.EACCES, syscall.EOPNOTSUPP, syscall.ENOENT, syscall.EEXIST} {
		if strings.Contains(msg, errno.Error()) {
			return &kernelError{err: err, errno: errno}
		}
	}
	return err
}
