package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/ftpnft/ftpnft/internal/nlio"
	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// A batch collects the messages of one nf_tables transaction. Its
// *nftables.Conn encodes them (AddTable, AddRule, ...) but sends nothing:
// ftpnft sends the batch itself (see conn.commit), because google/nftables
// v0.3.0 can neither tie a batch to a ruleset generation nor say which
// message of a batch the kernel rejected.
type batch struct {
	*nftables.Conn
	msgs []netlink.Message
	gen  uint32 // the generation the batch is built for and checked against
	// applied tells, when the kernel's answers to the batch were lost,
	// whether the kernel holds what the batch asked for.
	applied func(c *conn) (bool, error)
}

func newBatch() (*batch, error) {
	b := &batch{}
	c, err := nftables.New(nftables.WithTestDial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		if len(reqs) > 2 {
			b.msgs = append(b.msgs, reqs[1:len(reqs)-1]...) // between BATCH_BEGIN and BATCH_END
		}
		return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
	}))
	if err != nil {
		return nil, err
	}
	b.Conn = c
	return b, nil
}

// add appends m, encoded by ftpnft, after the messages queued so far.
func (b *batch) add(m netlink.Message) error {
	if err := b.Flush(); err != nil {
		return err
	}
	b.msgs = append(b.msgs, m)
	return nil
}

// messages returns the batch's messages, or the first encoding error.
func (b *batch) messages() ([]netlink.Message, error) {
	if err := b.Flush(); err != nil {
		return nil, err
	}
	return b.msgs, nil
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

// exchange sends a batch and returns the kernel's answers.
func (c *conn) exchange(msgs []netlink.Message) ([]reply, error) {
	// The kernel handles a batch inside sendmsg: when that returns, every
	// answer is queued. Read them all without waiting, as nft does.
	ms, err := c.talk(msgs, false, nil)
	return acks(ms), err
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

// talk sends msgs on a new socket (or to the test dial) and returns the
// answers, read as receive reads them.
func (c *conn) talk(msgs []netlink.Message, wait bool, last func(netlink.Message) bool) ([]netlink.Message, error) {
	if c.dial != nil {
		return c.dial(msgs)
	}
	nc, err := c.socket()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if _, err := nc.SendMessages(msgs); err != nil {
		return nil, err
	}
	return receive(nc, wait, last)
}

// socket opens a netlink socket to nfnetlink in c's namespace.
func (c *conn) socket() (*netlink.Conn, error) {
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: c.netnsFd})
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
func receive(nc *netlink.Conn, wait bool, last func(netlink.Message) bool) ([]netlink.Message, error) {
	var out []netlink.Message
	err := nlio.Receive(nc, wait, func(m netlink.Message) bool {
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

// batchMessage is NFNL_MSG_BATCH_BEGIN or _END for nf_tables; a begin with a
// non-zero gen carries it as NFNL_BATCH_GENID.
func batchMessage(typ uint16, gen uint32) netlink.Message {
	data := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}
	data = binary.BigEndian.AppendUint16(data, unix.NFNL_SUBSYS_NFTABLES)
	if gen != 0 {
		data = append(data, nltest.MustMarshalAttributes([]netlink.Attribute{
			{Type: unix.NFNL_BATCH_GENID, Data: binary.BigEndian.AppendUint32(nil, gen)},
		})...)
	}
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request}, Data: data}
}

// batchGeneration returns the NFNL_BATCH_GENID of a batch begin message, or 0.
func batchGeneration(m netlink.Message) uint32 {
	if id := bytesAttr(m, unix.NFNL_BATCH_GENID); len(id) == 4 {
		return binary.BigEndian.Uint32(id)
	}
	return 0
}

// stringAttr returns the string attribute typ of an nf_tables message.
func stringAttr(m netlink.Message, typ uint16) string {
	return strings.TrimRight(string(bytesAttr(m, typ)), "\x00")
}

// bytesAttr returns the attribute typ of an nf_tables message.
func bytesAttr(m netlink.Message, typ uint16) []byte {
	if len(m.Data) < 4 {
		return nil
	}
	var out []byte
	// After a malformed attribute, what came before it still counts.
	_ = nlio.EachAttr(m.Data[4:], func(t uint16, data []byte) error {
		if t == typ && out == nil {
			out = data
		}
		return nil
	})
	return out
}

// describe says what a batch message asks of the kernel, in nft's words.
func describe(m netlink.Message) string {
	switch uint16(m.Header.Type) & 0xff {
	case unix.NFT_MSG_NEWTABLE:
		return "add table inet " + stringAttr(m, unix.NFTA_TABLE_NAME)
	case unix.NFT_MSG_DELTABLE:
		return "delete table inet " + stringAttr(m, unix.NFTA_TABLE_NAME)
	case unix.NFT_MSG_NEWOBJ:
		return "add object " + stringAttr(m, unix.NFTA_OBJ_NAME)
	case unix.NFT_MSG_NEWSET:
		return "add set " + stringAttr(m, unix.NFTA_SET_NAME)
	case unix.NFT_MSG_NEWSETELEM:
		return "add elements to set " + stringAttr(m, unix.NFTA_SET_ELEM_LIST_SET)
	case unix.NFT_MSG_NEWCHAIN:
		return "add chain " + stringAttr(m, unix.NFTA_CHAIN_NAME)
	case unix.NFT_MSG_NEWRULE:
		s := "add rule to chain " + stringAttr(m, unix.NFTA_RULE_CHAIN)
		if c, ok := userdata.GetString(bytesAttr(m, unix.NFTA_RULE_USERDATA), userdata.TypeComment); ok {
			s += fmt.Sprintf(" (comment %q)", strings.TrimRight(c, "\x00"))
		}
		return s
	}
	return fmt.Sprintf("message type %d", uint16(m.Header.Type)&0xff)
}

// The stamp: a table that ftpnft creates carries, in its user data, a
// digest of the ruleset it was created from and the generation its batch
// led to. Every change to the ruleset, by anyone, is a commit that moves the
// generation on; so when the generation still equals the stamp's, the table
// is exactly as ftpnft created it, and a re-install of the same ruleset
// needs to read nothing more (a 10,000-network set takes the kernel tens of
// milliseconds to dump). Otherwise Apply compares the table expression by
// expression, as always.
//
// The stamp is a libnftnl user data TLV of a type nft does not know (it
// only knows the comment, type 0), so nft ignores it when it lists the
// table.
const stampType = 0xf7

// nftaTableUserdata is NFTA_TABLE_USERDATA (linux/netfilter/nf_tables.h),
// which golang.org/x/sys/unix lacks.
const nftaTableUserdata = 6

// stamp returns the table user data for fingerprint fp at generation gen.
func stamp(fp fingerprint, gen uint32) []byte {
	b := []byte{stampType, byte(4 + len(fp))}
	b = binary.BigEndian.AppendUint32(b, gen)
	return append(b, fp[:]...)
}

// nextGeneration is the generation after a commit at gen: the kernel skips
// 0, which means "no generation" in a batch.
func nextGeneration(gen uint32) uint32 {
	if gen+1 == 0 {
		return 1
	}
	return gen + 1
}

// tableMessage is NFT_MSG_NEWTABLE for an inet table with user data.
func tableMessage(name string, udata []byte) netlink.Message {
	b := []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}
	b = appendAttr(b, unix.NFTA_TABLE_NAME, cstring(name))
	b = appendAttr(b, unix.NFTA_TABLE_FLAGS, make([]byte, 4))
	b = appendAttr(b, nftaTableUserdata, udata)
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create,
		},
		Data: b,
	}
}

// parseStamp returns the generation and fingerprint of the stamp in a
// table's user data; ok is false when there is none.
func parseStamp(udata []byte) (gen uint32, fp fingerprint, ok bool) {
	for len(udata) >= 2 {
		typ, n := udata[0], int(udata[1])
		if 2+n > len(udata) {
			break
		}
		if v := udata[2 : 2+n]; typ == stampType && n == 4+len(fp) {
			copy(fp[:], v[4:])
			return binary.BigEndian.Uint32(v), fp, true
		}
		udata = udata[2+n:]
	}
	return 0, fingerprint{}, false
}

// table reads the user data of table in family inet, and whether it exists.
func (c *conn) table(name string) (udata []byte, found bool, err error) {
	ms, err := c.dump(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return nil, false, &Error{Op: "list tables", Err: classify(err)}
	}
	for _, m := range ms {
		if uint16(m.Header.Type)&0xff == unix.NFT_MSG_NEWTABLE && stringAttr(m, unix.NFTA_TABLE_NAME) == name {
			return bytesAttr(m, nftaTableUserdata), true, nil
		}
	}
	return nil, false, nil
}

// stamped reports whether table carries the stamp of fp at the current
// generation: ftpnft created it from a ruleset with fingerprint fp, and
// nothing has been committed since.
func (c *conn) stamped(table string, fp fingerprint) (bool, error) {
	gen, err := c.generation()
	if err != nil {
		return false, err
	}
	udata, found, err := c.table(table)
	return found && bytes.Equal(udata, stamp(fp, gen)), err
}
