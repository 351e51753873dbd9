package conntrack

import (
	"context"
	"fmt"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// ctnetlink is what listing and watching need of the kernel's conntrack
// interface in one network namespace. The real one, namespace, opens
// netlink sockets there; tests replay messages captured from the kernel.
type ctnetlink interface {
	// dump sends req and hands each answer to each, until each returns
	// true or ctx ends.
	dump(ctx context.Context, req netlink.Message, each func(netlink.Message) bool) error
	// subscribe joins the event groups, with a receive buffer of
	// readBuffer bytes (0: the system's default).
	subscribe(groups []netfilter.NetlinkGroup, readBuffer int) (events, error)
	// helperOf asks for the helper of the connection whose original tuple
	// is t.
	helperOf(t Tuple) (string, error)
	// stats returns the connections tracked and the limit.
	stats() (entries, max uint32, err error)
	// flows lists the tracked connections.
	flows() ([]flow, error)
	// deleteFlow deletes the tracked connection f.
	deleteFlow(f flow) error
	// gone returns an error wrapping ErrNetNSGone when the namespace's path
	// no longer names it, and nil otherwise.
	gone() error
	close()
}

// events is one subscription to conntrack events. Receive blocks until
// messages arrive or the subscription fails; Close ends it, and a Receive
// that is blocked. *netlink.Conn is one.
type events interface {
	Receive() ([]netlink.Message, error)
	Close() error
}

// namespace is ctnetlink in a real network namespace: the caller's, or the
// one the options name.
type namespace struct {
	fd      int // -1: the caller's namespace
	release func()
	ino     uint64 // of the namespace at path
	path    string
	query   *ct.Conn // asks for connections; dialled when first needed
}

// open returns the kernel the options name: a test's, or a namespace.
func open(o options) (ctnetlink, error) {
	if o.kernel != nil {
		return o.kernel, nil
	}
	fd, file, release, err := o.netns.Open()
	if err != nil {
		return nil, &Error{Op: "open network namespace", Err: err}
	}
	n := &namespace{fd: fd, release: release}
	if file != nil {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			release()
			return nil, &Error{Op: "open network namespace", Err: fmt.Errorf("stat %s: %w", o.netns.Path, err)}
		}
		n.ino, n.path = st.Ino, o.netns.Path
	}
	return n, nil
}

func (n *namespace) close() {
	if n.query != nil {
		n.query.Close()
	}
	n.release()
}

func (n *namespace) gone() error {
	if n.path == "" {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(n.path, &st); err == nil && st.Ino == n.ino {
		return nil
	}
	return &Error{Op: "watch", Err: fmt.Errorf("%s: %w", n.path, ErrNetNSGone)}
}

// socket opens a netlink socket to nfnetlink in the namespace, for dumps and
// events that this package reads itself.
func (n *namespace) socket() (*netlink.Conn, error) {
	nc, err := nlio.DialNetfilter(n.fd)
	if err != nil {
		return nil, &Error{Op: "connect to conntrack", Err: unsupported(err)}
	}
	return nc, nil
}

func (n *namespace) dump(ctx context.Context, req netlink.Message, each func(netlink.Message) bool) error {
	nc, err := n.socket()
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.Send(req); err != nil {
		return err
	}
	return nlio.Receive(ctx, nc, true, each)
}

func (n *namespace) subscribe(groups []netfilter.NetlinkGroup, readBuffer int) (events, error) {
	nc, err := n.socket()
	if err != nil {
		return nil, err
	}
	if readBuffer > 0 {
		if err := nc.SetReadBuffer(readBuffer); err != nil {
			nc.Close()
			return nil, &Error{Op: "set read buffer", Err: err}
		}
	}
	for _, g := range groups {
		if err := nc.JoinGroup(uint32(g)); err != nil {
			nc.Close()
			return nil, &Error{Op: "listen for conntrack events", Err: err}
		}
	}
	return nc, nil
}

// conn returns the connection to github.com/ti-mo/conntrack, which
// decodes connections, dialling it when first needed.
func (n *namespace) conn() (*ct.Conn, error) {
	if n.query == nil {
		c, err := ct.Dial(nlio.Config(n.fd))
		if err != nil {
			return nil, &Error{Op: "connect to conntrack", Err: unsupported(err)}
		}
		n.query = c
	}
	return n.query, nil
}

func (n *namespace) stats() (uint32, uint32, error) {
	c, err := n.conn()
	if err != nil {
		return 0, 0, err
	}
	s, err := c.StatsGlobal()
	return s.Entries, s.MaxEntries, err
}

func (n *namespace) flows() ([]flow, error) {
	c, err := n.conn()
	if err != nil {
		return nil, err
	}
	fs, err := c.Dump(nil)
	if err != nil {
		return nil, err
	}
	out := make([]flow, len(fs))
	for i, f := range fs {
		out[i] = flow{orig: tupleOf(f.TupleOrig), proto: f.TupleOrig.Proto.Protocol, zone: f.Zone,
			helper: f.Helper.Name, related: f.Status.Expected(), master: tupleOf(f.TupleMaster),
			packetsOrig: f.CountersOrig.Packets, bytesOrig: f.CountersOrig.Bytes,
			packetsReply: f.CountersReply.Packets, bytesReply: f.CountersReply.Bytes}
	}
	return out, nil
}

func (n *namespace) deleteFlow(f flow) error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	// github.com/ti-mo/conntrack encodes a delete as IPv6 only when the
	// reply tuple's addresses are IPv6 too: they are not sent.
	return c.Delete(ct.Flow{Zone: f.zone, TupleOrig: ct.Tuple{
		IP:    ct.IPTuple{SourceAddress: f.orig.Src, DestinationAddress: f.orig.Dst},
		Proto: ct.ProtoTuple{Protocol: f.proto, SourcePort: f.orig.SPort, DestinationPort: f.orig.DPort},
	}, TupleReply: ct.Tuple{IP: ct.IPTuple{SourceAddress: f.orig.Dst, DestinationAddress: f.orig.Src}}})
}

// helperOf asks through github.com/ti-mo/conntrack.
func (n *namespace) helperOf(t Tuple) (string, error) {
	if _, err := n.conn(); err != nil {
		return "", err
	}
	f := ct.Flow{TupleOrig: ct.Tuple{
		IP:    ct.IPTuple{SourceAddress: t.Src, DestinationAddress: t.Dst},
		Proto: ct.ProtoTuple{Protocol: unix.IPPROTO_TCP, SourcePort: t.SPort, DestinationPort: t.DPort},
	}}
	got, err := n.query.Get(f)
	if err != nil {
		return "", err
	}
	return got.Helper.Name, nil
}
