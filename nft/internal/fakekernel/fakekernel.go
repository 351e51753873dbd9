package fakekernel

import (
	"bytes"
	"encoding/binary"
	"slices"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// Kernel is an in-memory nf_tables for tests without privileges. It
// stores the messages that create tables, objects, sets, chains and rules,
// answers dumps with them, and applies a batch to a copy that replaces the
// state only when every message succeeded, as the kernel's transactions do.
// Its zero value is an empty kernel. Its fields inject failures and
// concurrent writers.
type Kernel struct {
	State    State
	Batches  int     // batches committed
	Writes   int     // batch messages received, committed or not
	FailOn   *uint16 // NFT_MSG_* type whose first message is rejected with FailErr
	FailErr  syscall.Errno
	FailText string // extended acknowledgement text with FailErr
	// CommitErr fails a batch whose messages all succeeded, as a failed
	// commit does: an error with the first message's header, then an ack
	// for every message.
	CommitErr syscall.Errno
	// ResetErr fails a batch with a single error and no other answer, as
	// the kernel does when it runs out of memory for its answers.
	ResetErr syscall.Errno
	Gen      uint32 // generation ID minus 1 (the kernel's starts at 1): one more for every committed batch
	// Busy simulates another writer committing all the time: every
	// generation reading is one higher than the last.
	Busy bool
	// BeforeBatch, when set, runs once before the next batch is applied:
	// another writer getting in between ftpnft's read and its batch.
	BeforeBatch func()
	// Gets counts the requests of each NFT_MSG_GET* type.
	Gets map[uint16]int
	// MidRead, when set, runs once when ftpnft lists chains: another writer
	// committing while ftpnft reads its table.
	MidRead func()
	// Overflow loses the answers to every batch, as the kernel does when
	// they overflow the socket's receive buffer (ENOBUFS); the batch itself
	// is handled as usual.
	Overflow bool
}

// State is what the kernel holds: the messages that created each thing.
type State struct {
	Tables, Objs, Sets, Elems, Chains, Rules []netlink.Message
}

// Clone returns a copy of s that shares no slice with it.
func (s State) Clone() State {
	return State{
		Tables: append([]netlink.Message(nil), s.Tables...),
		Objs:   append([]netlink.Message(nil), s.Objs...),
		Sets:   append([]netlink.Message(nil), s.Sets...),
		Elems:  append([]netlink.Message(nil), s.Elems...),
		Chains: append([]netlink.Message(nil), s.Chains...),
		Rules:  append([]netlink.Message(nil), s.Rules...),
	}
}

func msgType(m netlink.Message) uint16 { return uint16(m.Header.Type) & 0xff }
func subsys(m netlink.Message) uint16  { return uint16(m.Header.Type) >> 8 }
func family(m netlink.Message) byte    { return m.Data[0] }

// Attribute numbers shared by the message kinds the fake stores.
const (
	attrTable     = 1 // NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,OBJ_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE}
	attrSetName   = 2 // NFTA_SET_NAME, NFTA_SET_ELEM_LIST_SET
	attrRuleChain = unix.NFTA_RULE_CHAIN
	attrChainName = unix.NFTA_CHAIN_NAME
)

// ack is the kernel's answer to req on a socket with NETLINK_CAP_ACK and
// NETLINK_EXT_ACK: the errno, req's header, and text as NLMSGERR_ATTR_MSG.
func ack(req netlink.Message, errno syscall.Errno, text ...string) netlink.Message {
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	data = binary.NativeEndian.AppendUint32(data, req.Header.Length)
	data = binary.NativeEndian.AppendUint16(data, uint16(req.Header.Type))
	data = binary.NativeEndian.AppendUint16(data, uint16(req.Header.Flags))
	data = binary.NativeEndian.AppendUint32(data, req.Header.Sequence)
	data = binary.NativeEndian.AppendUint32(data, req.Header.PID)
	flags := netlink.Capped
	if len(text) > 0 {
		flags |= netlink.AcknowledgeTLVs
		data = append(data, nltest.MustMarshalAttributes([]netlink.Attribute{{Type: unix.NLMSGERR_ATTR_MSG, Data: append([]byte(text[0]), 0)}})...)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.Error, Flags: flags, Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   data,
	}
}

// Exchange answers one request or batch of whole netlink messages, as
// nft.Kernel asks.
func (k *Kernel) Exchange(request [][]byte) ([][]byte, error) {
	reqs := make([]netlink.Message, len(request))
	for i, b := range request {
		if err := reqs[i].UnmarshalBinary(b); err != nil {
			return nil, err
		}
	}
	answers, err := k.Dial(reqs)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(answers))
	for i, m := range answers {
		m.Header.Length = uint32(unix.NLMSG_HDRLEN + len(m.Data))
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// TableNames returns the names of the tables of family, in the order
// they were created.
func (k *Kernel) TableNames(family byte) []string {
	var out []string
	for _, m := range k.State.Tables {
		if m.Data[0] == family {
			out = append(out, nlio.StringAttr(m, attrTable))
		}
	}
	return out
}

// FlushTable deletes the rules of table, as `nft flush table inet TABLE`
// does: chains (with their policies), sets and objects stay. It is a
// commit of its own.
func (k *Kernel) FlushTable(table string) {
	k.State.Rules = slices.DeleteFunc(k.State.Rules, func(m netlink.Message) bool { return nlio.StringAttr(m, attrTable) == table })
	k.Gen++
}

// Dial answers like Exchange, on decoded messages: for
// github.com/google/nftables' WithTestDial, to act as another writer.
func (k *Kernel) Dial(reqs []netlink.Message) ([]netlink.Message, error) {
	if len(reqs) == 0 {
		// A receive after the first reply of a batch: the next ack.
		return []netlink.Message{ack(netlink.Message{}, 0)}, nil
	}
	if subsys(reqs[0]) == 0 && msgType(reqs[0]) == unix.NFNL_MSG_BATCH_BEGIN {
		acks := k.batch(reqs[0], reqs[1:len(reqs)-1])
		if k.Overflow {
			return nil, syscall.ENOBUFS
		}
		return acks, nil
	}
	req := reqs[0]
	if k.Gets == nil {
		k.Gets = map[uint16]int{}
	}
	k.Gets[msgType(req)]++
	var found []netlink.Message
	switch msgType(req) {
	case unix.NFT_MSG_GETGEN:
		if k.Busy {
			k.Gen++
		}
		attrs, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_GEN_ID, Data: binary.BigEndian.AppendUint32(nil, k.Gen+1)}})
		return []netlink.Message{{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN), Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   append([]byte{unix.AF_UNSPEC, 0, 0, 0}, attrs...),
		}}, nil
	case unix.NFT_MSG_GETTABLE:
		found = k.State.Tables
	case unix.NFT_MSG_GETOBJ:
		found = k.State.Objs
	case unix.NFT_MSG_GETSET:
		found = k.State.Sets
	case unix.NFT_MSG_GETSETELEM:
		found = k.State.Elems
	case unix.NFT_MSG_GETCHAIN:
		if f := k.MidRead; f != nil {
			k.MidRead = nil
			f()
		}
		found = k.State.Chains
	case unix.NFT_MSG_GETRULE:
		found = k.State.Rules
	default:
		return []netlink.Message{ack(req, syscall.EOPNOTSUPP)}, nil
	}
	var out []netlink.Message
	for _, m := range found {
		if family(req) != unix.AF_UNSPEC && family(m) != family(req) {
			continue
		}
		if t := nlio.StringAttr(req, attrTable); t != "" && nlio.StringAttr(m, attrTable) != t {
			continue
		}
		if c := nlio.StringAttr(req, attrRuleChain); msgType(req) == unix.NFT_MSG_GETRULE && c != "" && nlio.StringAttr(m, attrRuleChain) != c {
			continue
		}
		if msgType(req) == unix.NFT_MSG_GETSETELEM && nlio.StringAttr(m, attrSetName) != nlio.StringAttr(req, attrSetName) {
			continue
		}
		m.Header.Flags = netlink.Multi
		m.Header.Sequence = req.Header.Sequence
		m.Header.PID = req.Header.PID
		out = append(out, m)
	}
	return append(out, netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: req.Header.Sequence}, Data: make([]byte, 4)}), nil
}

// batch applies msgs to a copy of the state and commits it if all succeed.
// As the kernel does, it refuses a batch begun with a generation ID other
// than the current one, and after a failed message goes on to answer every
// other message before it aborts.
func (k *Kernel) batch(begin netlink.Message, msgs []netlink.Message) []netlink.Message {
	if f := k.BeforeBatch; f != nil {
		k.BeforeBatch = nil
		f()
	}
	if k.Busy {
		k.Gen++
	}
	if gen := batchGeneration(begin); gen != 0 && gen != k.Gen+1 {
		return []netlink.Message{ack(begin, unix.ERESTART)}
	}
	next := k.State.Clone()
	var acks []netlink.Message
	failed := false
	for _, m := range msgs {
		k.Writes++
		errno := next.apply(m)
		var text []string
		if k.FailOn != nil && msgType(m) == *k.FailOn && !failed {
			errno = k.FailErr
			if k.FailText != "" {
				text = []string{k.FailText}
			}
		}
		if m.Header.Flags&netlink.Acknowledge != 0 || errno != 0 {
			acks = append(acks, ack(m, errno, text...))
		}
		failed = failed || errno != 0
	}
	switch {
	case k.ResetErr != 0:
		return []netlink.Message{ack(msgs[0], k.ResetErr)}
	case k.CommitErr != 0 && !failed:
		return append([]netlink.Message{ack(msgs[0], k.CommitErr)}, acks...)
	case !failed:
		k.State = next
		k.Batches++
		k.Gen++
	}
	return acks
}

func (s *State) apply(m netlink.Message) syscall.Errno {
	table := nlio.StringAttr(m, attrTable)
	has := func(list []netlink.Message) bool {
		for _, x := range list {
			if family(x) == family(m) && nlio.StringAttr(x, attrTable) == table {
				return true
			}
		}
		return false
	}
	keep := func(list []netlink.Message) []netlink.Message {
		var out []netlink.Message
		for _, x := range list {
			if !(family(x) == family(m) && nlio.StringAttr(x, attrTable) == table) {
				out = append(out, x)
			}
		}
		return out
	}
	stored := m
	stored.Data = bytes.Clone(m.Data)
	switch msgType(m) {
	case unix.NFT_MSG_NEWTABLE:
		if has(s.Tables) && m.Header.Flags&netlink.Excl != 0 {
			return syscall.EEXIST
		}
		if !has(s.Tables) {
			s.Tables = append(s.Tables, stored)
		}
	case unix.NFT_MSG_DELTABLE:
		if !has(s.Tables) {
			return syscall.ENOENT
		}
		s.Tables, s.Objs, s.Chains, s.Rules = keep(s.Tables), keep(s.Objs), keep(s.Chains), keep(s.Rules)
		s.Sets, s.Elems = keep(s.Sets), keep(s.Elems)
	case unix.NFT_MSG_NEWOBJ:
		if !has(s.Tables) {
			return syscall.ENOENT
		}
		s.Objs = append(s.Objs, stored)
	case unix.NFT_MSG_NEWSET:
		if !has(s.Tables) {
			return syscall.ENOENT
		}
		s.Sets = append(s.Sets, stored)
	case unix.NFT_MSG_NEWSETELEM:
		if !has(s.Sets) {
			return syscall.ENOENT
		}
		s.Elems = append(s.Elems, canonicalElems(stored))
	case unix.NFT_MSG_NEWCHAIN:
		if !has(s.Tables) {
			return syscall.ENOENT
		}
		s.Chains = append(s.Chains, stored)
	case unix.NFT_MSG_NEWRULE:
		if !has(s.Chains) {
			return syscall.ENOENT
		}
		s.Rules = append(s.Rules, stored)
	default:
		return syscall.EOPNOTSUPP
	}
	return 0
}

// canonicalElems numbers a set element list as the kernel does in dumps:
// every entry is NFTA_LIST_ELEM. google/nftables numbers them 1, 2, 3...
// when it sends them (the kernel does not care) but decodes only
// NFTA_LIST_ELEM.
func canonicalElems(m netlink.Message) netlink.Message {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return m
	}
	for i, a := range attrs {
		if a.Type&^unix.NLA_F_NESTED != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		list, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return m
		}
		for j := range list {
			list[j].Type = unix.NFTA_LIST_ELEM | unix.NLA_F_NESTED
		}
		if attrs[i].Data, err = netlink.MarshalAttributes(list); err != nil {
			return m
		}
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return m
	}
	m.Data = append(m.Data[:4:4], data...)
	return m
}

// batchGeneration returns the NFNL_BATCH_GENID of a batch begin message, or 0.
func batchGeneration(m netlink.Message) uint32 {
	if id := nlio.Attr(m, unix.NFNL_BATCH_GENID); len(id) == 4 {
		return binary.BigEndian.Uint32(id)
	}
	return 0
}
