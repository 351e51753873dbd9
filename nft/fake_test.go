package nft

import (
	"bytes"
	"encoding/binary"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// fakeKernel is an in-memory nf_tables for tests without privileges. It
// stores the messages that create tables, objects, chains and rules, answers
// dumps with them, and applies a batch to a copy that replaces the state only
// when every message succeeded, as the kernel's transactions do.
type fakeKernel struct {
	state    fakeState
	batches  int     // batches committed
	writes   int     // batch messages received, committed or not
	failOn   *uint16 // NFT_MSG_* type whose first message is rejected with failErr
	failErr  syscall.Errno
	failText string // extended acknowledgement text with failErr
	// commitErr fails a batch whose messages all succeeded, as a failed
	// commit does: an error with the first message's header, then an ack
	// for every message.
	commitErr syscall.Errno
	// resetErr fails a batch with a single error and no other answer, as
	// the kernel does when it runs out of memory for its answers.
	resetErr syscall.Errno
	gen      uint32 // generation ID minus 1 (the kernel's starts at 1): one more for every committed batch
	// busy simulates another writer committing all the time: every
	// generation reading is one higher than the last.
	busy bool
	// beforeBatch, when set, runs once before the next batch is applied:
	// another writer getting in between ftpnft's read and its batch.
	beforeBatch func()
	// gets counts the requests of each NFT_MSG_GET* type.
	gets map[uint16]int
	// midRead, when set, runs once when ftpnft lists chains: another writer
	// committing while ftpnft reads its table.
	midRead func()
	// overflow loses the answers to every batch, as the kernel does when
	// they overflow the socket's receive buffer (ENOBUFS); the batch itself
	// is handled as usual.
	overflow bool
}

type fakeState struct {
	tables, objs, sets, elems, chains, rules []netlink.Message
}

func (s fakeState) clone() fakeState {
	return fakeState{
		tables: append([]netlink.Message(nil), s.tables...),
		objs:   append([]netlink.Message(nil), s.objs...),
		sets:   append([]netlink.Message(nil), s.sets...),
		elems:  append([]netlink.Message(nil), s.elems...),
		chains: append([]netlink.Message(nil), s.chains...),
		rules:  append([]netlink.Message(nil), s.rules...),
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

func (k *fakeKernel) dial(reqs []netlink.Message) ([]netlink.Message, error) {
	if len(reqs) == 0 {
		// A receive after the first reply of a batch: the next ack.
		return []netlink.Message{ack(netlink.Message{}, 0)}, nil
	}
	if subsys(reqs[0]) == 0 && msgType(reqs[0]) == unix.NFNL_MSG_BATCH_BEGIN {
		acks := k.batch(reqs[0], reqs[1:len(reqs)-1])
		if k.overflow {
			return nil, syscall.ENOBUFS
		}
		return acks, nil
	}
	req := reqs[0]
	if k.gets == nil {
		k.gets = map[uint16]int{}
	}
	k.gets[msgType(req)]++
	var found []netlink.Message
	switch msgType(req) {
	case unix.NFT_MSG_GETGEN:
		if k.busy {
			k.gen++
		}
		attrs, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_GEN_ID, Data: binary.BigEndian.AppendUint32(nil, k.gen+1)}})
		return []netlink.Message{{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN), Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   append([]byte{unix.AF_UNSPEC, 0, 0, 0}, attrs...),
		}}, nil
	case unix.NFT_MSG_GETTABLE:
		found = k.state.tables
	case unix.NFT_MSG_GETOBJ:
		found = k.state.objs
	case unix.NFT_MSG_GETSET:
		found = k.state.sets
	case unix.NFT_MSG_GETSETELEM:
		found = k.state.elems
	case unix.NFT_MSG_GETCHAIN:
		if f := k.midRead; f != nil {
			k.midRead = nil
			f()
		}
		found = k.state.chains
	case unix.NFT_MSG_GETRULE:
		found = k.state.rules
	default:
		return []netlink.Message{ack(req, syscall.EOPNOTSUPP)}, nil
	}
	var out []netlink.Message
	for _, m := range found {
		if family(m) != family(req) {
			continue
		}
		if t := stringAttr(req, attrTable); t != "" && stringAttr(m, attrTable) != t {
			continue
		}
		if c := stringAttr(req, attrRuleChain); msgType(req) == unix.NFT_MSG_GETRULE && c != "" && stringAttr(m, attrRuleChain) != c {
			continue
		}
		if msgType(req) == unix.NFT_MSG_GETSETELEM && stringAttr(m, attrSetName) != stringAttr(req, attrSetName) {
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
func (k *fakeKernel) batch(begin netlink.Message, msgs []netlink.Message) []netlink.Message {
	if f := k.beforeBatch; f != nil {
		k.beforeBatch = nil
		f()
	}
	if k.busy {
		k.gen++
	}
	if gen := batchGeneration(begin); gen != 0 && gen != k.gen+1 {
		return []netlink.Message{ack(begin, unix.ERESTART)}
	}
	next := k.state.clone()
	var acks []netlink.Message
	failed := false
	for _, m := range msgs {
		k.writes++
		errno := next.apply(m)
		var text []string
		if k.failOn != nil && msgType(m) == *k.failOn && !failed {
			errno = k.failErr
			if k.failText != "" {
				text = []string{k.failText}
			}
		}
		if m.Header.Flags&netlink.Acknowledge != 0 || errno != 0 {
			acks = append(acks, ack(m, errno, text...))
		}
		failed = failed || errno != 0
	}
	switch {
	case k.resetErr != 0:
		return []netlink.Message{ack(msgs[0], k.resetErr)}
	case k.commitErr != 0 && !failed:
		return append([]netlink.Message{ack(msgs[0], k.commitErr)}, acks...)
	case !failed:
		k.state = next
		k.batches++
		k.gen++
	}
	return acks
}

func (s *fakeState) apply(m netlink.Message) syscall.Errno {
	table := stringAttr(m, attrTable)
	has := func(list []netlink.Message) bool {
		for _, x := range list {
			if family(x) == family(m) && stringAttr(x, attrTable) == table {
				return true
			}
		}
		return false
	}
	keep := func(list []netlink.Message) []netlink.Message {
		var out []netlink.Message
		for _, x := range list {
			if !(family(x) == family(m) && stringAttr(x, attrTable) == table) {
				out = append(out, x)
			}
		}
		return out
	}
	stored := m
	stored.Data = bytes.Clone(m.Data)
	switch msgType(m) {
	case unix.NFT_MSG_NEWTABLE:
		if has(s.tables) && m.Header.Flags&netlink.Excl != 0 {
			return syscall.EEXIST
		}
		if !has(s.tables) {
			s.tables = append(s.tables, stored)
		}
	case unix.NFT_MSG_DELTABLE:
		if !has(s.tables) {
			return syscall.ENOENT
		}
		s.tables, s.objs, s.chains, s.rules = keep(s.tables), keep(s.objs), keep(s.chains), keep(s.rules)
		s.sets, s.elems = keep(s.sets), keep(s.elems)
	case unix.NFT_MSG_NEWOBJ:
		if !has(s.tables) {
			return syscall.ENOENT
		}
		s.objs = append(s.objs, stored)
	case unix.NFT_MSG_NEWSET:
		if !has(s.tables) {
			return syscall.ENOENT
		}
		s.sets = append(s.sets, stored)
	case unix.NFT_MSG_NEWSETELEM:
		if !has(s.sets) {
			return syscall.ENOENT
		}
		s.elems = append(s.elems, canonicalElems(stored))
	case unix.NFT_MSG_NEWCHAIN:
		if !has(s.tables) {
			return syscall.ENOENT
		}
		s.chains = append(s.chains, stored)
	case unix.NFT_MSG_NEWRULE:
		if !has(s.chains) {
			return syscall.ENOENT
		}
		s.rules = append(s.rules, stored)
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
