package conntrack

import (
	"time"

	"github.com/ftpnft/ftpnft/internal/netns"
)

// Option configures List and Watch.
type Option func(*options)

type options struct {
	netns      netns.NetNS
	kernel     ctnetlink // a test's, in place of the namespace's
	helper     string
	readBuffer int
	nsPoll     time.Duration
	ready      func()
}

// WithReady calls ready once Watch is subscribed and has listed the live
// expectations: every event from then on will be reported.
func WithReady(ready func()) Option { return func(o *options) { o.ready = ready } }

// WithNetNS works in the network namespace at path, such as
// /var/run/netns/NAME or /proc/PID/ns/net. An empty path is an error, never
// the caller's own namespace; so is a path that is not a network namespace.
func WithNetNS(path string) Option {
	return func(o *options) { o.netns.Path, o.netns.HasPath = path, true }
}

// WithNetNSFd works in the network namespace of an open file descriptor,
// which the caller keeps open and owns.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netns.Fd, o.netns.HasFd = fd, true } }

// WithHelper keeps only expectations (and related connections) of the named
// kernel helper; "" keeps all. The default is "ftp".
func WithHelper(name string) Option { return func(o *options) { o.helper = name } }

// WithReadBuffer sets the receive buffer of the watch socket in bytes
// (default [DefaultReadBuffer]). A larger buffer loses fewer events under
// bursts; tests use a tiny one to provoke losses.
func WithReadBuffer(bytes int) Option { return func(o *options) { o.readBuffer = bytes } }

// DefaultReadBuffer is the watch socket's receive buffer, so that bursts of
// thousands of events per second are not lost while the reader catches up:
// with the kernel's default (about 200 KiB) a watch lost about half of
// 10,000 expectations created in bursts of 500, with this one none (see
// BenchmarkWatch). With privileges it may exceed net.core.rmem_max; the
// kernel charges only what is queued.
const DefaultReadBuffer = 8 << 20

func collect(opts []Option) options {
	o := options{helper: "ftp", nsPoll: 500 * time.Millisecond, readBuffer: DefaultReadBuffer}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
