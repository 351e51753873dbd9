package nft

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// conn is a connection to nf_tables in one namespace.
type conn struct {
	*nftables.Conn
	ctx     context.Context // ends waits for the kernel's answers
	netnsFd int             // -1 for the caller's namespace
	dial    nltest.Func
	raw     *netlink.Conn // for what ftpnft sends itself; opened by talk
	verify  bool          // WithVerify
	// stateDir is WithStateDir's directory; "" for none.
	stateDir string
	// ownershipOnly makes read stop once it knows whether the table is
	// ftpnft's.
	ownershipOnly bool
}

// connect returns a netlink connection to nf_tables and a function that
// releases what connect opened.
func connect(ctx context.Context, opts []Option) (*conn, func(), error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var copts []nftables.ConnOption
	release := func() {}
	cn := &conn{ctx: ctx, dial: o.dial, verify: o.verify, stateDir: o.stateDir, netnsFd: -1}
	if o.dial != nil {
		copts = append(copts, nftables.WithTestDial(o.dial))
	} else {
		fd, _, rel, err := o.netns.Open()
		if err != nil {
			return nil, nil, &Error{Op: "open netns", Err: err}
		}
		release, cn.netnsFd = rel, fd
		if fd >= 0 {
			copts = append(copts, nftables.WithNetNSFd(fd))
		}
	}
	if o.dial == nil {
		// One socket for all the reads of a transaction, not one each.
		copts = append(copts, nftables.WithSockOptions(bigBuffers), nftables.AsLasting())
	}
	c, err := nftables.New(copts...)
	if err != nil {
		release()
		return nil, nil, &Error{Op: "connect", Err: classify(err)}
	}
	cn.Conn = c
	return cn, func() {
		c.CloseLasting()
		if cn.raw != nil {
			cn.raw.Close()
		}
		release()
	}, nil
}

// Generation returns the ruleset's generation ID (NFT_MSG_GETGEN), which the
// kernel increments with every committed batch in the namespace: two equal
// readings mean that nothing was changed in between, by ftpnft or anyone
// else.
func Generation(ctx context.Context, opts ...Option) (uint32, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return 0, err
	}
	defer release()
	return c.generation()
}

// generation is [Generation] on an open connection. google/nftables v0.3.0
// has no call for it.
func (c *conn) generation() (uint32, error) {
	ms, err := c.talk([]netlink.Message{{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}}, true, func(netlink.Message) bool { return true })
	if err != nil {
		return 0, &Error{Op: "get generation", Err: classify(err)}
	}
	for _, r := range acks(ms) {
		switch r.errno {
		case 0:
		case syscall.EINVAL:
			// nfnetlink answers EINVAL for a subsystem it does not have;
			// the generation is the first thing ftpnft asks nf_tables for.
			return 0, &Error{Op: "get generation", Err: unsupported{fmt.Errorf("%w: the kernel lacks nf_tables (CONFIG_NF_TABLES)", r.err())}}
		default:
			return 0, &Error{Op: "get generation", Err: r.err()}
		}
	}
	for _, m := range ms {
		if uint16(m.Header.Type)&0xff == unix.NFT_MSG_NEWGEN {
			if id := nlio.Attr(m, unix.NFTA_GEN_ID); len(id) == 4 {
				return binary.BigEndian.Uint32(id), nil
			}
		}
	}
	return 0, &Error{Op: "get generation", Err: errors.New("no generation ID in the kernel's answer")}
}

// socketBuffer is the netlink socket buffer size: a batch with a 10,000
// entry source set, and the kernel's answers to it, exceed the default.
const socketBuffer = 8 << 20

func bigBuffers(c *netlink.Conn) error {
	if err := c.SetReadBuffer(socketBuffer); err != nil {
		return err
	}
	return c.SetWriteBuffer(socketBuffer)
}

// commit sends b's messages as one batch that the kernel applies only while
// the ruleset is still at generation b.gen (NFNL_BATCH_GENID: the kernel
// checks it under the lock that serializes all nf_tables transactions).
// Another commit since then makes the kernel refuse the whole batch
// (ERESTART), and commit returns errChanged. When the kernel rejects a
// message, the error names it: its position in the batch and what it asked
// for.
func (c *conn) commit(op, table string, b *batch) error {
	msgs, err := b.messages()
	if err != nil {
		return &Error{Op: op, Table: table, Err: err}
	}
	gen := b.gen
	all := make([]netlink.Message, 0, len(msgs)+2)
	all = append(all, batchMessage(unix.NFNL_MSG_BATCH_BEGIN, gen))
	want := 0 // answers expected: one per message that asks for an ack
	for _, m := range msgs {
		// Rules are queued with NLM_F_ECHO, which makes the kernel send
		// each one back; ftpnft does not read them.
		m.Header.Flags &^= unix.NLM_F_ECHO
		if m.Header.Flags&netlink.Acknowledge != 0 {
			want++
		}
		all = append(all, m)
	}
	all = append(all, batchMessage(unix.NFNL_MSG_BATCH_END, 0))
	for i := range all {
		all[i].Header.Sequence = uint32(i + 1)
		all[i].Header.PID = 0
	}

	if err := c.fitBatch(all); err != nil {
		return &Error{Op: op, Table: table, Err: classify(err)}
	}
	replies, err := c.exchange(all)
	if errors.Is(err, unix.ENOBUFS) {
		return c.overflowed(op, table, b)
	}
	if err != nil {
		return &Error{Op: op, Table: table, Err: classify(err)}
	}
	var failed *reply // the first error, in batch order
	answers := map[uint32]int{}
	for i, r := range replies {
		answers[r.seq]++
		if r.errno != 0 && (failed == nil || r.seq < failed.seq) {
			failed = &replies[i]
		}
	}
	switch {
	case failed == nil:
		return nil
	case failed.errno == unix.ERESTART:
		return errChanged
	case failed.seq <= 1 || int(failed.seq) >= len(all) || len(replies) != want || answers[failed.seq] > 1:
		// Not one message's fault: the batch as a whole was refused (no
		// permission, no memory, a failed commit). The kernel then
		// answers with the batch's first header, or answers a message
		// twice, or not every message.
		return &Error{Op: op, Table: table, Err: fmt.Errorf("batch of %d messages: %w", len(msgs), failed.err())}
	}
	i := int(failed.seq) - 1
	return &Error{Op: op, Table: table, Step: fmt.Sprintf("batch message %d of %d, %s", i, len(msgs), describe(all[i])), Err: failed.err()}
}

// overflowed finds out what became of batch b after its answers overflowed
// the socket's buffer (ENOBUFS) and were lost. The generation tells whether
// anything was committed since the batch was built: nothing means that the
// batch was not applied. Otherwise b.applied looks at the kernel: it holds
// what the batch asked for, or it does not.
func (c *conn) overflowed(op, table string, b *batch) error {
	lost := func(err error) error {
		return &Error{Op: op, Table: table, Err: fmt.Errorf("the kernel's answers to the batch overflowed the socket buffer, and %w", err)}
	}
	// The overrun socket drops what comes next until it is drained: ask
	// on a new one.
	if c.raw != nil {
		c.raw.Close()
		c.raw = nil
	}
	now, err := c.generation()
	if err != nil {
		return lost(fmt.Errorf("whether it was applied is unknown: %w", err))
	}
	if now == b.gen {
		return lost(fmt.Errorf("it was not applied (the ruleset is still at generation %d): %w", now, unix.ENOBUFS))
	}
	if b.applied != nil {
		ok, err := b.applied(c)
		if err != nil {
			return lost(fmt.Errorf("whether it was applied is unknown: %w", err))
		}
		if ok {
			return nil
		}
	}
	return lost(fmt.Errorf("it was not applied (another writer committed generation %d): %w", now, unix.ENOBUFS))
}

// fitBatch raises the socket's send buffer to hold the whole batch: the
// kernel takes a batch in one sendmsg, which fails with EMSGSIZE when the
// batch is larger than the buffer (500,000 networks are 28 MB). As nft
// does, the buffer is forced past net.core.wmem_max (SO_SNDBUFFORCE, which
// needs CAP_NET_ADMIN, as the batch itself does).
func (c *conn) fitBatch(msgs []netlink.Message) error {
	if c.dial != nil {
		return nil
	}
	size := 0
	for _, m := range msgs {
		size += nlio.Align(unix.NLMSG_HDRLEN + len(m.Data))
	}
	if size <= socketBuffer/2 { // the kernel doubles what it is given, and keeps half for itself
		return nil
	}
	raw, err := c.rawConn()
	if err != nil {
		return err
	}
	rc, err := raw.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size+socketBuffer)
	})
	return cmp.Or(err, serr)
}

// exchange sends a batch and returns the kernel's answers.
func (c *conn) exchange(msgs []netlink.Message) ([]reply, error) {
	// The kernel handles a batch inside sendmsg: when that returns, every
	// answer is queued. Read them all without waiting, as nft does.
	ms, err := c.talk(msgs, false, nil)
	return acks(ms), err
}

// dump sends a dump request and returns the kernel's answer, up to its end.
func (c *conn) dump(req netlink.Message) ([]netlink.Message, error) {
	ms, err := c.talk([]netlink.Message{req}, true, func(m netlink.Message) bool {
		return m.Header.Type == netlink.Done || m.Header.Type == netlink.Error
	})
	if err != nil {
		return nil, err
	}
	for _, r := range acks(ms) {
		if r.errno != 0 {
			return nil, r.err()
		}
	}
	return ms, nil
}

// talk sends msgs on c's own socket (or to the test dial) and returns the
// answers, read as receive reads them. The socket is opened once per
// connection (rawConn). Every exchange reads its answers to the end, so none
// is left for the next.
func (c *conn) talk(msgs []netlink.Message, wait bool, last func(netlink.Message) bool) ([]netlink.Message, error) {
	if c.dial != nil {
		return c.dial(msgs)
	}
	raw, err := c.rawConn()
	if err != nil {
		return nil, err
	}
	if _, err := raw.SendMessages(msgs); err != nil {
		return nil, err
	}
	return c.receive(raw, wait, last)
}

// rawConn returns c's own socket, opened on first use: opening one in a
// namespace costs two setns calls.
func (c *conn) rawConn() (*netlink.Conn, error) {
	if c.raw == nil {
		nc, err := c.socket()
		if err != nil {
			return nil, err
		}
		c.raw = nc
	}
	return c.raw, nil
}

// socket opens a netlink socket to nfnetlink in c's namespace.
func (c *conn) socket() (*netlink.Conn, error) {
	nc, err := nlio.DialNetfilter(c.netnsFd)
	if err != nil {
		return nil, err
	}
	err = bigBuffers(nc)
	// Errors then carry only the header of the rejected message (its
	// sequence number is all commit needs), not a copy of all of it, and
	// the kernel's explanation when it has one.
	if err == nil {
		err = nc.SetOption(netlink.CapAcknowledge, true)
	}
	if err == nil {
		err = nc.SetOption(netlink.ExtendedAcknowledge, true)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// receive reads answers from nc as nlio.Receive does, until last returns
// true for a message or (without wait) nothing more is queued.
func (c *conn) receive(nc *netlink.Conn, wait bool, last func(netlink.Message) bool) ([]netlink.Message, error) {
	var out []netlink.Message
	err := nlio.Receive(c.ctx, nc, wait, func(m netlink.Message) bool {
		m.Data = bytes.Clone(m.Data)
		out = append(out, m)
		return last != nil && last(m)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// reply is the kernel's acknowledgement of one batch message.
type reply struct {
	seq   uint32
	errno syscall.Errno
	text  string // the kernel's extended acknowledgement message, if any
}

func (r reply) err() error {
	if r.text != "" {
		return fmt.Errorf("%w (kernel: %s)", classify(r.errno), r.text)
	}
	return classify(r.errno)
}

// acks returns the acknowledgements among ms, and the end of a dump, whose
// error code says whether it failed part way; other messages (echoes,
// notifications, a dump's objects) are skipped.
func acks(ms []netlink.Message) []reply {
	var out []reply
	for _, m := range ms {
		errno, ok := nlio.Errno(m)
		if !ok {
			continue
		}
		r := reply{seq: m.Header.Sequence, errno: errno}
		// struct nlmsgerr: the errno, then the rejected message's header
		// (all of the message unless capped), then extended
		// acknowledgement TLVs. A dump's end has the TLVs right after the
		// errno.
		off := 4
		if m.Header.Type == netlink.Error {
			off += unix.NLMSG_HDRLEN
			if m.Header.Flags&netlink.Capped == 0 && len(m.Data) >= off {
				off = 4 + nlio.Align(int(binary.NativeEndian.Uint32(m.Data[4:])))
			}
		}
		if m.Header.Flags&netlink.AcknowledgeTLVs != 0 && off <= len(m.Data) {
			if ad, err := netlink.NewAttributeDecoder(m.Data[off:]); err == nil {
				for ad.Next() {
					if ad.Type() == unix.NLMSGERR_ATTR_MSG {
						r.text = ad.String()
					}
				}
			}
		}
		out = append(out, r)
	}
	return out
}
