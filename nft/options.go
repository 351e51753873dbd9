package nft

import "github.com/mdlayher/netlink/nltest"

// Option configures how the package reaches the kernel.
type Option func(*options)

type options struct {
	netnsPath string
	netnsSet  bool // WithNetNS was given, even with ""
	netnsFd   int
	dial      nltest.Func
}

// WithNetNS works in the network namespace at path, such as
// /var/run/netns/NAME or /proc/PID/ns/net. The caller's thread never
// changes namespace: the netlink socket is created in the namespace. An
// empty path is an error, never the caller's own namespace; so is a path
// that is not a network namespace.
func WithNetNS(path string) Option {
	return func(o *options) { o.netnsPath, o.netnsSet = path, true }
}

// WithNetNSFd works in the network namespace of an open file descriptor.
// The caller keeps ownership of fd.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netnsFd = fd } }

// WithTestDial replaces the kernel with f, for tests without privileges:
// every netlink request goes to f, which answers with messages or an error.
func WithTestDial(f nltest.Func) Option { return func(o *options) { o.dial = f } }
