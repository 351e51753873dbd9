package nft

import (
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/netns"
)

// Option configures how the package reaches the kernel.
type Option func(*options)

type options struct {
	netns    netns.NetNS
	dial     nltest.Func // a Kernel's, in place of the namespace's
	verify   bool
	stateDir string
}

// WithNetNS works in the network namespace at path, such as
// /var/run/netns/NAME or /proc/PID/ns/net. The caller's thread never
// changes namespace: the netlink socket is created in the namespace. An
// empty path is an error, never the caller's own namespace; so is a path
// that is not a network namespace.
func WithNetNS(path string) Option {
	return func(o *options) { o.netns.Path, o.netns.HasPath = path, true }
}

// WithNetNSFd works in the network namespace of an open file descriptor.
// The caller keeps ownership of fd.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netns.Fd, o.netns.HasFd = fd, true } }

// A Kernel answers nf_tables requests in place of the kernel, so that code
// using this package can be tested without privileges; nfttest.Fake is one.
// Exchange takes the netlink messages of one request, or of one batch, each
// whole (header included) in the kernel's encoding, and returns the
// kernel's answers in the same form, or an error as a socket would (such
// as syscall.ENOBUFS when answers were lost).
type Kernel interface {
	Exchange(request [][]byte) (answers [][]byte, err error)
}

// WithKernel sends every request to k instead of the kernel.
func WithKernel(k Kernel) Option { return func(o *options) { o.dial = kernelDial(k) } }

// kernelDial adapts k to the netlink messages that this package and
// google/nftables exchange.
func kernelDial(k Kernel) nltest.Func {
	return func(reqs []netlink.Message) ([]netlink.Message, error) {
		request := make([][]byte, len(reqs))
		for i, m := range reqs {
			m.Header.Length = uint32(unix.NLMSG_HDRLEN + len(m.Data))
			b, err := m.MarshalBinary()
			if err != nil {
				return nil, err
			}
			request[i] = b
		}
		answers, err := k.Exchange(request)
		if err != nil {
			return nil, err
		}
		out := make([]netlink.Message, len(answers))
		for i, b := range answers {
			if err := out[i].UnmarshalBinary(b); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

// WithVerify makes ReadStatus read every set element and compare the table
// in full, even when the table's stamp proves it unchanged since ftpnft
// wrote it. Without it, a stamped table's address sets are taken from the
// ruleset compared with, which their digest equals: a status of a
// million-network allowlist then reads no element.
func WithVerify() Option { return func(o *options) { o.verify = true } }

// WithStateDir records in dir, for each namespace and table, the address
// sets of the ruleset last applied, so that a later change of a large set
// (an allowlist or blocklist of a million networks) is applied by
// difference without reading the set back from the kernel first, and so
// that ReadInstalled reads no set element either. What dir holds is used
// only when the table's stamp proves that the kernel still holds it; a
// missing or stale file costs a read of the set, never a wrong change.
// Apply and Remove create and remove the files; the command uses
// /var/lib/ftpnft.
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }
