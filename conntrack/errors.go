package conntrack

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrNetNSGone reports that the watched network namespace's path was
// removed (ip netns del) or now names another namespace.
var ErrNetNSGone = errors.New("network namespace was deleted")

// unsupported marks the errors of a kernel without conntrack's netlink
// interface as errors.ErrUnsupported too, as the nft package does: no
// nfnetlink at all fails the socket with EPROTONOSUPPORT, and nfnetlink
// without ctnetlink answers a well-formed dump with EINVAL.
func unsupported(err error) error {
	if errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%w (%w: the kernel lacks conntrack's netlink interface, CONFIG_NF_CT_NETLINK)", err, errors.ErrUnsupported)
	}
	return err
}

// Error is an error of the kernel or of the netlink connection, with the
// operation that failed. Unwrap yields the cause, so that errors.Is finds
// os.ErrPermission, os.ErrNotExist, errors.ErrUnsupported, ErrNetNSGone,
// context.Canceled and the kernel's errno.
type Error struct {
	Op  string // what was being done, e.g. "list expectations"
	Err error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
