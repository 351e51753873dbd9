package fakekernel

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// Kernel is an in-memory nf_tables for tests without privileges. It
// creates, changes and deletes tables, objects, sets, set elements, chains
// and rules as Linux 6.18 does, with the same handles and the same errors,
// answers dumps with what it holds, and applies a batch to a copy that
// replaces the state only when every message succeeded, as the kernel's
// transactions do. Its zero value is an empty kernel. Its fields inject
// failures and concurrent writers.
//
// It does not model what ftpnft does not use: overlap checks of interval
// sets, verdict maps (the chains their elements jump to are not counted
// as used), anonymous sets bound to rules, updates of counters, quotas and
// limits, table flags, renames, and references by ID instead of by name.
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

// State is what the kernel holds. Tables, objects, sets, chains and rules
// are kept as the messages that created them, because the kernel answers
// dumps with the same attributes: each carries the handle the kernel gave
// it (NFTA_*_HANDLE), a chain its current policy, and Rules are in the
// order of their chains. Set elements are kept one by one, because they
// are added and deleted one by one.
type State struct {
	Tables                    []Table
	Objs, Sets, Chains, Rules []netlink.Message
	// Elems are the elements of all sets, by family, table, set and key,
	// a range's end before a start at the same key.
	Elems []Elem
	// LastTableHandle is the handle of the table created last: the kernel
	// numbers tables from 1 in one sequence.
	LastTableHandle uint64
}

// Table is a table the kernel holds.
type Table struct {
	Msg netlink.Message // the NEWTABLE that created it, with NFTA_TABLE_HANDLE
	// LastHandle is the handle given last to a chain, rule, set or object
	// of the table: the kernel numbers them all from 1 in one sequence per
	// table (table->hgenerator), which starts again with a new table.
	LastHandle uint64
}

// Elem is one element of a set.
type Elem struct {
	Family     byte
	Table, Set string
	// Key is the element's key, the NFTA_DATA_VALUE of NFTA_SET_ELEM_KEY.
	// It is a string, not a []byte, so that a copy of an Elem shares
	// nothing that can change.
	Key   string
	Flags uint32 // NFTA_SET_ELEM_FLAGS; NFT_SET_ELEM_INTERVAL_END tells a range's end from a start at the same key
	// Rest is the element's other attributes as they came (a map's data,
	// a timeout, a comment), answered in dumps as they are.
	Rest string
}

// Clone returns a copy of s that shares nothing that can change with it,
// so that a batch applied to the copy leaves s as it was.
func (s State) Clone() State {
	c := s
	c.Tables = slices.Clone(s.Tables)
	for i := range c.Tables {
		c.Tables[i].Msg = cloneMessage(c.Tables[i].Msg)
	}
	c.Objs, c.Sets = cloneMessages(s.Objs), cloneMessages(s.Sets)
	c.Chains, c.Rules = cloneMessages(s.Chains), cloneMessages(s.Rules)
	c.Elems = slices.Clone(s.Elems) // an Elem holds only values and strings
	return c
}

func cloneMessages(list []netlink.Message) []netlink.Message {
	out := slices.Clone(list)
	for i := range out {
		out[i] = cloneMessage(out[i])
	}
	return out
}

func cloneMessage(m netlink.Message) netlink.Message {
	m.Data = bytes.Clone(m.Data)
	return m
}

func msgType(m netlink.Message) uint16 { return uint16(m.Header.Type) & 0xff }
func subsys(m netlink.Message) uint16  { return uint16(m.Header.Type) >> 8 }
func family(m netlink.Message) byte    { return m.Data[0] }

// Attribute numbers shared by the message kinds the fake stores.
const (
	attrTable     = 1 // NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,OBJ_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE}
	attrRuleChain = unix.NFTA_RULE_CHAIN
)

// Attribute numbers that golang.org/x/sys/unix lacks, from the kernel's
// include/uapi/linux/netfilter/nf_tables.h.
const (
	nftaTableHandle = 4    // NFTA_TABLE_HANDLE
	nftaSetHandle   = 0x10 // NFTA_SET_HANDLE
	nftaObjHandle   = 6    // NFTA_OBJ_HANDLE
	nftaObjrefType  = 1    // NFTA_OBJREF_IMM_TYPE
)

// The verdicts a base chain's policy may be, from include/uapi/linux/netfilter.h.
const (
	nfDrop   = 0 // NF_DROP
	nfAccept = 1 // NF_ACCEPT
)

// elemsPerMessage is the most set elements one message of a dump holds:
// the kernel fills each part of a dump up to 32 KiB, about a thousand
// address elements.
const elemsPerMessage = 1000

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
	for _, t := range k.State.Tables {
		if t.Msg.Data[0] == family {
			out = append(out, nlio.StringAttr(t.Msg, attrTable))
		}
	}
	return out
}

// FlushTable deletes the rules of table, as `nft flush table inet TABLE`
// does: chains (with their policies), sets with their elements, and
// objects stay. It is a commit of its own.
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
	s := &k.State
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
		for _, t := range s.Tables {
			found = append(found, t.Msg)
		}
	case unix.NFT_MSG_GETOBJ:
		found = s.inTableOrder(s.Objs)
	case unix.NFT_MSG_GETSET:
		// The kernel looks up the table before it starts the dump.
		if t := nlio.StringAttr(req, unix.NFTA_SET_TABLE); t != "" && s.tableIndex(family(req), t) < 0 {
			return []netlink.Message{ack(req, syscall.ENOENT)}, nil
		}
		found = s.inTableOrder(s.Sets)
	case unix.NFT_MSG_GETSETELEM:
		msgs, errno := s.elemDump(req)
		if errno != 0 {
			return []netlink.Message{ack(req, errno)}, nil
		}
		found = msgs
	case unix.NFT_MSG_GETCHAIN:
		if f := k.MidRead; f != nil {
			k.MidRead = nil
			f()
		}
		found = s.inTableOrder(s.Chains)
	case unix.NFT_MSG_GETRULE:
		found = s.ruleDump()
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
		if t := nlio.Attr(req, unix.NFTA_OBJ_TYPE); msgType(req) == unix.NFT_MSG_GETOBJ && t != nil && !bytes.Equal(nlio.Attr(m, unix.NFTA_OBJ_TYPE), t) {
			continue
		}
		m.Header.Flags = netlink.Multi
		m.Header.Sequence = req.Header.Sequence
		m.Header.PID = req.Header.PID
		out = append(out, m)
	}
	return append(out, netlink.Message{Header: netlink.Header{Type: netlink.Done, Flags: netlink.Multi, Sequence: req.Header.Sequence}, Data: make([]byte, 4)}), nil
}

// inTableOrder returns the messages of list table by table, in the order
// of s.Tables, as the kernel dumps them.
func (s *State) inTableOrder(list []netlink.Message) []netlink.Message {
	var out []netlink.Message
	for _, t := range s.Tables {
		fam, name := family(t.Msg), nlio.StringAttr(t.Msg, attrTable)
		for _, m := range list {
			if family(m) == fam && nlio.StringAttr(m, attrTable) == name {
				out = append(out, m)
			}
		}
	}
	return out
}

// ruleDump returns the rules as the kernel dumps them: table by table,
// chain by chain, each but the first of its chain with NFTA_RULE_POSITION
// holding the handle of the rule before it.
func (s *State) ruleDump() []netlink.Message {
	var out []netlink.Message
	for _, c := range s.inTableOrder(s.Chains) {
		in := ruleOf(family(c), nlio.StringAttr(c, attrTable), nlio.StringAttr(c, unix.NFTA_CHAIN_NAME))
		var prev []byte
		for _, r := range s.Rules {
			if !in(r) {
				continue
			}
			if prev != nil {
				r = withAttrs(r, nil, netlink.Attribute{Type: unix.NFTA_RULE_POSITION, Data: prev})
			}
			out = append(out, r)
			prev = nlio.Attr(r, unix.NFTA_RULE_HANDLE)
		}
	}
	return out
}

// elemDump answers a GETSETELEM dump: the set's elements in NEWSETELEM
// messages, or ENOENT when the kernel would find no such set.
func (s *State) elemDump(req netlink.Message) ([]netlink.Message, syscall.Errno) {
	fam := family(req)
	table := nlio.StringAttr(req, unix.NFTA_SET_ELEM_LIST_TABLE)
	set := nlio.StringAttr(req, unix.NFTA_SET_ELEM_LIST_SET)
	if s.tableIndex(fam, table) < 0 || find(s.Sets, fam, table, named(unix.NFTA_SET_NAME, set)) < 0 {
		return nil, syscall.ENOENT
	}
	var els []Elem
	for _, e := range s.Elems {
		if e.Family == fam && e.Table == table && e.Set == set {
			els = append(els, e)
		}
	}
	var out []netlink.Message
	for len(els) > 0 {
		n := min(elemsPerMessage, len(els))
		out = append(out, elemMessage(fam, table, set, els[:n]))
		els = els[n:]
	}
	// The kernel ends every element dump with a message whose list is
	// empty: the part of the dump that finds no element left.
	return append(out, elemMessage(fam, table, set, nil)), 0
}

// elemMessage is a NEWSETELEM message of a dump that holds els, encoded
// as the kernel encodes it: each element with its key, its flags when it
// has any, and its other attributes. Every nest carries NLA_F_NESTED, so
// that a reader that does not mask the attribute flags fails here.
func elemMessage(fam byte, table, set string, els []Elem) netlink.Message {
	var list []byte
	for _, e := range els {
		item := nlio.AppendAttr(nil, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED, nlio.AppendAttr(nil, unix.NFTA_DATA_VALUE, []byte(e.Key)))
		if e.Flags != 0 {
			item = nlio.AppendAttr(item, unix.NFTA_SET_ELEM_FLAGS, binary.BigEndian.AppendUint32(nil, e.Flags))
		}
		item = append(item, e.Rest...)
		list = nlio.AppendAttr(list, unix.NFTA_LIST_ELEM|unix.NLA_F_NESTED, item)
	}
	data := []byte{fam, unix.NFNETLINK_V0, 0, 0}
	data = nlio.AppendAttr(data, unix.NFTA_SET_ELEM_LIST_TABLE, append([]byte(table), 0))
	data = nlio.AppendAttr(data, unix.NFTA_SET_ELEM_LIST_SET, append([]byte(set), 0))
	data = nlio.AppendAttr(data, unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED, list)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM)},
		Data:   data,
	}
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

// apply applies one batch message to s and returns the kernel's errno for
// it; a message that fails changes nothing.
func (s *State) apply(m netlink.Message) syscall.Errno {
	if len(m.Data) < 4 {
		return syscall.EINVAL
	}
	if _, err := netlink.UnmarshalAttributes(m.Data[4:]); err != nil {
		return syscall.EINVAL
	}
	switch msgType(m) {
	case unix.NFT_MSG_NEWTABLE:
		return s.newTable(m)
	case unix.NFT_MSG_DELTABLE:
		return s.delTable(m)
	case unix.NFT_MSG_NEWCHAIN:
		return s.newChain(m)
	case unix.NFT_MSG_DELCHAIN:
		return s.delChain(m)
	case unix.NFT_MSG_NEWRULE:
		return s.newRule(m)
	case unix.NFT_MSG_DELRULE:
		return s.delRule(m)
	case unix.NFT_MSG_NEWSET:
		return s.newSet(m)
	case unix.NFT_MSG_DELSET:
		return s.delSet(m)
	case unix.NFT_MSG_NEWSETELEM:
		return s.newElems(m)
	case unix.NFT_MSG_DELSETELEM:
		return s.delElems(m)
	case unix.NFT_MSG_NEWOBJ:
		return s.newObj(m)
	case unix.NFT_MSG_DELOBJ:
		return s.delObj(m)
	}
	return syscall.EOPNOTSUPP
}

// newTable creates a table. An existing one stays as it is: the kernel
// updates only a table's flags in place (dormant, owner), never its user
// data.
func (s *State) newTable(m netlink.Message) syscall.Errno {
	name := nlio.StringAttr(m, unix.NFTA_TABLE_NAME)
	if name == "" {
		return syscall.EINVAL
	}
	if s.tableIndex(family(m), name) >= 0 {
		switch {
		case m.Header.Flags&netlink.Excl != 0:
			return syscall.EEXIST
		case m.Header.Flags&netlink.Replace != 0:
			return syscall.EOPNOTSUPP
		}
		return 0
	}
	s.LastTableHandle++
	handle := netlink.Attribute{Type: nftaTableHandle, Data: be64(s.LastTableHandle)}
	s.Tables = append(s.Tables, Table{Msg: withAttrs(m, []uint16{nftaTableHandle}, handle)})
	return 0
}

// delTable deletes a table with everything in it. Without a family, or
// without a name and a handle, it deletes every table of the family (of
// all families without one) of the name (of any name without one), as
// nft_flush does for `nft flush ruleset`.
func (s *State) delTable(m netlink.Message) syscall.Errno {
	fam := family(m)
	if fam == unix.AF_UNSPEC || (nlio.Attr(m, unix.NFTA_TABLE_NAME) == nil && nlio.Attr(m, nftaTableHandle) == nil) {
		name := nlio.StringAttr(m, unix.NFTA_TABLE_NAME)
		for _, t := range slices.Clone(s.Tables) {
			tfam, tname := family(t.Msg), nlio.StringAttr(t.Msg, attrTable)
			if (fam == unix.AF_UNSPEC || tfam == fam) && (name == "" || tname == name) {
				s.dropTable(tfam, tname)
			}
		}
		return 0
	}
	match := identified(m, unix.NFTA_TABLE_NAME, nftaTableHandle)
	i := slices.IndexFunc(s.Tables, func(t Table) bool { return family(t.Msg) == fam && match(t.Msg) })
	if i < 0 {
		return syscall.ENOENT
	}
	name := nlio.StringAttr(s.Tables[i].Msg, attrTable)
	if m.Header.Flags&unix.NLM_F_NONREC != 0 && s.holdsAnything(fam, name) {
		return syscall.EBUSY
	}
	s.dropTable(fam, name)
	return 0
}

// holdsAnything reports whether table (fam, name) holds a chain, set or
// object.
func (s *State) holdsAnything(fam byte, name string) bool {
	all := func(netlink.Message) bool { return true }
	return find(s.Chains, fam, name, all) >= 0 || find(s.Sets, fam, name, all) >= 0 || find(s.Objs, fam, name, all) >= 0
}

// dropTable deletes table (fam, name) and everything in it.
func (s *State) dropTable(fam byte, name string) {
	inTable := func(m netlink.Message) bool { return family(m) == fam && nlio.StringAttr(m, attrTable) == name }
	s.Tables = slices.DeleteFunc(s.Tables, func(t Table) bool { return inTable(t.Msg) })
	s.Objs = slices.DeleteFunc(s.Objs, inTable)
	s.Sets = slices.DeleteFunc(s.Sets, inTable)
	s.Chains = slices.DeleteFunc(s.Chains, inTable)
	s.Rules = slices.DeleteFunc(s.Rules, inTable)
	s.Elems = slices.DeleteFunc(s.Elems, func(e Elem) bool { return e.Family == fam && e.Table == name })
}

// newChain creates a chain, or updates an existing one: its policy may
// change, its hook and priority not.
func (s *State) newChain(m netlink.Message) syscall.Errno {
	fam, table := family(m), nlio.StringAttr(m, attrTable)
	t := s.tableIndex(fam, table)
	if t < 0 {
		return syscall.ENOENT
	}
	i := find(s.Chains, fam, table, identified(m, unix.NFTA_CHAIN_NAME, unix.NFTA_CHAIN_HANDLE))
	if i < 0 && nlio.Attr(m, unix.NFTA_CHAIN_HANDLE) != nil {
		return syscall.ENOENT
	}
	if p := nlio.Attr(m, unix.NFTA_CHAIN_POLICY); p != nil {
		switch {
		case i >= 0 && !isBaseChain(s.Chains[i]), i < 0 && nlio.Attr(m, unix.NFTA_CHAIN_HOOK) == nil:
			return syscall.EOPNOTSUPP // only a base chain has a policy
		case len(p) != 4 || (u32(p) != nfAccept && u32(p) != nfDrop):
			return syscall.EINVAL
		}
	}
	if i >= 0 {
		return s.updateChain(i, m)
	}
	if nlio.StringAttr(m, unix.NFTA_CHAIN_NAME) == "" {
		return syscall.EINVAL
	}
	handle := netlink.Attribute{Type: unix.NFTA_CHAIN_HANDLE, Data: s.newHandle(t)}
	s.Chains = append(s.Chains, withAttrs(m, []uint16{unix.NFTA_CHAIN_HANDLE}, handle))
	return 0
}

// updateChain applies NEWCHAIN m to the existing chain s.Chains[i]. The
// kernel cannot move a base chain to another hook or priority in place
// (nf_tables_updchain answers EEXIST), and renames are not modelled.
func (s *State) updateChain(i int, m netlink.Message) syscall.Errno {
	old := s.Chains[i]
	switch {
	case m.Header.Flags&netlink.Excl != 0:
		return syscall.EEXIST
	case m.Header.Flags&netlink.Replace != 0:
		return syscall.EOPNOTSUPP
	case nlio.Attr(m, unix.NFTA_CHAIN_NAME) != nil && nlio.StringAttr(m, unix.NFTA_CHAIN_NAME) != nlio.StringAttr(old, unix.NFTA_CHAIN_NAME):
		return syscall.EOPNOTSUPP
	}
	if nlio.Attr(m, unix.NFTA_CHAIN_HOOK) != nil {
		if !isBaseChain(old) || chainType(m) != chainType(old) ||
			!bytes.Equal(hookAttr(m, unix.NFTA_HOOK_HOOKNUM), hookAttr(old, unix.NFTA_HOOK_HOOKNUM)) ||
			!bytes.Equal(hookAttr(m, unix.NFTA_HOOK_PRIORITY), hookAttr(old, unix.NFTA_HOOK_PRIORITY)) {
			return syscall.EEXIST
		}
	}
	if p := nlio.Attr(m, unix.NFTA_CHAIN_POLICY); p != nil {
		s.Chains[i] = withAttrs(old, []uint16{unix.NFTA_CHAIN_POLICY}, netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: p})
	}
	return 0
}

func isBaseChain(m netlink.Message) bool { return nlio.Attr(m, unix.NFTA_CHAIN_HOOK) != nil }

// chainType is a base chain's type; the kernel takes "filter" when the
// message names none.
func chainType(m netlink.Message) string {
	if t := nlio.StringAttr(m, unix.NFTA_CHAIN_TYPE); t != "" {
		return t
	}
	return "filter"
}

// hookAttr returns attribute typ of chain message m's NFTA_CHAIN_HOOK.
func hookAttr(m netlink.Message, typ uint16) []byte {
	return firstAttr(nlio.Attr(m, unix.NFTA_CHAIN_HOOK), typ)
}

// delChain deletes a chain with its rules. It refuses while another rule
// of the table jumps or goes to it.
func (s *State) delChain(m netlink.Message) syscall.Errno {
	fam, table := family(m), nlio.StringAttr(m, attrTable)
	if s.tableIndex(fam, table) < 0 {
		return syscall.ENOENT
	}
	i := find(s.Chains, fam, table, identified(m, unix.NFTA_CHAIN_NAME, unix.NFTA_CHAIN_HANDLE))
	if i < 0 {
		return syscall.ENOENT
	}
	name := nlio.StringAttr(s.Chains[i], unix.NFTA_CHAIN_NAME)
	inChain := ruleOf(fam, table, name)
	if s.inUse(fam, table, ref{kind: refChain, name: name}, name) ||
		(m.Header.Flags&unix.NLM_F_NONREC != 0 && slices.ContainsFunc(s.Rules, inChain)) {
		return syscall.EBUSY
	}
	s.Rules = slices.DeleteFunc(s.Rules, inChain)
	s.Chains = slices.Delete(s.Chains, i, i+1)
	return 0
}

// newRule adds a rule to its chain, at the head, at the end, or before or
// after the rule of handle NFTA_RULE_POSITION, or replaces the rule of
// handle NFTA_RULE_HANDLE in place, as nf_tables_newrule does. Everything
// the rule refers to by name must exist.
func (s *State) newRule(m netlink.Message) syscall.Errno {
	fam, table, chain := family(m), nlio.StringAttr(m, attrTable), nlio.StringAttr(m, attrRuleChain)
	t := s.tableIndex(fam, table)
	if t < 0 || find(s.Chains, fam, table, named(unix.NFTA_CHAIN_NAME, chain)) < 0 {
		return syscall.ENOENT
	}
	flags := m.Header.Flags
	if h := nlio.Attr(m, unix.NFTA_RULE_HANDLE); h != nil {
		i := s.ruleIndex(fam, table, chain, h)
		switch {
		case i < 0:
			return syscall.ENOENT
		case flags&netlink.Excl != 0:
			return syscall.EEXIST
		case flags&netlink.Replace == 0:
			return syscall.EOPNOTSUPP
		case !s.resolves(fam, table, m):
			return syscall.ENOENT
		}
		s.Rules[i] = storedRule(m, h)
		return 0
	}
	if flags&netlink.Create == 0 || flags&netlink.Replace != 0 {
		return syscall.EINVAL
	}
	at := -1
	if p := nlio.Attr(m, unix.NFTA_RULE_POSITION); p != nil {
		if at = s.ruleIndex(fam, table, chain, p); at < 0 {
			return syscall.ENOENT
		}
		if flags&netlink.Append != 0 {
			at++ // right after the rule at the position, else right before it
		}
	}
	if !s.resolves(fam, table, m) {
		return syscall.ENOENT
	}
	if at < 0 {
		at = s.chainEnd(fam, table, chain, flags&netlink.Append != 0)
	}
	s.Rules = slices.Insert(s.Rules, at, storedRule(m, s.newHandle(t)))
	return 0
}

// storedRule is NEWRULE m as the kernel dumps the rule it makes, with
// handle and without the position it was asked to go to.
func storedRule(m netlink.Message, handle []byte) netlink.Message {
	return withAttrs(m, []uint16{unix.NFTA_RULE_HANDLE, unix.NFTA_RULE_POSITION}, netlink.Attribute{Type: unix.NFTA_RULE_HANDLE, Data: handle})
}

// ruleIndex returns the index in s.Rules of the rule of chain whose
// NFTA_RULE_HANDLE is handle, or -1.
func (s *State) ruleIndex(fam byte, table, chain string, handle []byte) int {
	return find(s.Rules, fam, table, func(r netlink.Message) bool {
		return nlio.StringAttr(r, attrRuleChain) == chain && bytes.Equal(nlio.Attr(r, unix.NFTA_RULE_HANDLE), handle)
	})
}

// chainEnd returns where in s.Rules a rule goes at the end of chain (last)
// or at its head: after its last rule or before its first, or at the end
// of s.Rules when the chain has none.
func (s *State) chainEnd(fam byte, table, chain string, last bool) int {
	in := ruleOf(fam, table, chain)
	if last {
		for i := len(s.Rules) - 1; i >= 0; i-- {
			if in(s.Rules[i]) {
				return i + 1
			}
		}
	} else if i := slices.IndexFunc(s.Rules, in); i >= 0 {
		return i
	}
	return len(s.Rules)
}

// ruleOf matches the rules of chain (fam, table, chain).
func ruleOf(fam byte, table, chain string) func(netlink.Message) bool {
	return func(r netlink.Message) bool {
		return family(r) == fam && nlio.StringAttr(r, attrTable) == table && nlio.StringAttr(r, attrRuleChain) == chain
	}
}

// delRule deletes the rule of handle NFTA_RULE_HANDLE; without a handle,
// every rule of the chain (nft flush chain); without a chain, every rule
// of the table, as nf_tables_delrule does, even when there is a handle.
func (s *State) delRule(m netlink.Message) syscall.Errno {
	fam, table, chain := family(m), nlio.StringAttr(m, attrTable), nlio.StringAttr(m, attrRuleChain)
	if s.tableIndex(fam, table) < 0 {
		return syscall.ENOENT
	}
	if chain != "" && find(s.Chains, fam, table, named(unix.NFTA_CHAIN_NAME, chain)) < 0 {
		return syscall.ENOENT
	}
	if h := nlio.Attr(m, unix.NFTA_RULE_HANDLE); h != nil && chain != "" {
		i := s.ruleIndex(fam, table, chain, h)
		if i < 0 {
			return syscall.ENOENT
		}
		s.Rules = slices.Delete(s.Rules, i, i+1)
		return 0
	}
	s.Rules = slices.DeleteFunc(s.Rules, func(r netlink.Message) bool {
		return family(r) == fam && nlio.StringAttr(r, attrTable) == table && (chain == "" || nlio.StringAttr(r, attrRuleChain) == chain)
	})
	return 0
}

// newSet creates a set. NEWSET of an existing set declared the same way
// changes only its timeout, garbage collection interval and size, as the
// kernel has done since 6.5; declared otherwise, it is refused.
func (s *State) newSet(m netlink.Message) syscall.Errno {
	fam, table, name := family(m), nlio.StringAttr(m, attrTable), nlio.StringAttr(m, unix.NFTA_SET_NAME)
	for _, typ := range []uint16{unix.NFTA_SET_TABLE, unix.NFTA_SET_NAME, unix.NFTA_SET_KEY_LEN, unix.NFTA_SET_ID} {
		if nlio.Attr(m, typ) == nil {
			return syscall.EINVAL // the kernel wants them all, even of a set that exists
		}
	}
	t := s.tableIndex(fam, table)
	if t < 0 {
		return syscall.ENOENT
	}
	if i := find(s.Sets, fam, table, named(unix.NFTA_SET_NAME, name)); i >= 0 {
		switch {
		case m.Header.Flags&netlink.Excl != 0:
			return syscall.EEXIST
		case m.Header.Flags&netlink.Replace != 0:
			return syscall.EOPNOTSUPP
		case !sameSetDeclaration(s.Sets[i], m):
			return syscall.EEXIST
		}
		s.Sets[i] = updatedSet(s.Sets[i], m)
		return 0
	}
	if m.Header.Flags&netlink.Create == 0 {
		return syscall.ENOENT
	}
	handle := netlink.Attribute{Type: nftaSetHandle, Data: s.newHandle(t)}
	s.Sets = append(s.Sets, withAttrs(m, []uint16{nftaSetHandle}, handle))
	return 0
}

// sameSetDeclaration reports whether NEWSET m declares the set that
// stored NEWSET set declares, as nft_set_is_same decides: same flags,
// key and data types and lengths.
func sameSetDeclaration(set, m netlink.Message) bool {
	for _, typ := range []uint16{unix.NFTA_SET_FLAGS, unix.NFTA_SET_KEY_TYPE, unix.NFTA_SET_KEY_LEN, unix.NFTA_SET_DATA_TYPE, unix.NFTA_SET_DATA_LEN} {
		if u32Attr(set, typ) != u32Attr(m, typ) {
			return false
		}
	}
	return true
}

// updatedSet is stored NEWSET set updated by NEWSET m: the timeout and
// garbage collection interval become m's (none when m has none), the size
// m's when m gives one.
func updatedSet(set, m netlink.Message) netlink.Message {
	drop := []uint16{unix.NFTA_SET_TIMEOUT, unix.NFTA_SET_GC_INTERVAL}
	var add []netlink.Attribute
	for _, typ := range drop {
		if v := nlio.Attr(m, typ); v != nil {
			add = append(add, netlink.Attribute{Type: typ, Data: v})
		}
	}
	if desc := nlio.Attr(m, unix.NFTA_SET_DESC); u32(firstAttr(desc, unix.NFTA_SET_DESC_SIZE)) != 0 {
		drop = append(drop, unix.NFTA_SET_DESC)
		add = append(add, netlink.Attribute{Type: unix.NFTA_SET_DESC | unix.NLA_F_NESTED, Data: desc})
	}
	return withAttrs(set, drop, add...)
}

// delSet deletes a set with its elements. It refuses while a rule of the
// table refers to it.
func (s *State) delSet(m netlink.Message) syscall.Errno {
	fam, table := family(m), nlio.StringAttr(m, attrTable)
	if s.tableIndex(fam, table) < 0 {
		return syscall.ENOENT
	}
	i := find(s.Sets, fam, table, identified(m, unix.NFTA_SET_NAME, nftaSetHandle))
	if i < 0 {
		return syscall.ENOENT
	}
	name := nlio.StringAttr(s.Sets[i], unix.NFTA_SET_NAME)
	inSet := func(e Elem) bool { return e.Family == fam && e.Table == table && e.Set == name }
	if s.inUse(fam, table, ref{kind: refSet, name: name}, "") ||
		(m.Header.Flags&unix.NLM_F_NONREC != 0 && slices.ContainsFunc(s.Elems, inSet)) {
		return syscall.EBUSY
	}
	s.Elems = slices.DeleteFunc(s.Elems, inSet)
	s.Sets = slices.Delete(s.Sets, i, i+1)
	return 0
}

// newElems adds the elements that NEWSETELEM m lists to its set. An
// element the set holds already is left as it is, or refused with
// NLM_F_EXCL. Ranges that overlap, which the kernel refuses in an
// interval set, are not detected.
func (s *State) newElems(m netlink.Message) syscall.Errno {
	set, errno := s.elemSet(m)
	if errno != 0 {
		return errno
	}
	els, err := elemsOf(m)
	if err != nil || !keysFit(els, u32Attr(set, unix.NFTA_SET_KEY_LEN)) {
		return syscall.EINVAL
	}
	slices.SortFunc(els, compareElems)
	var added []Elem
	for i, e := range els {
		_, held := slices.BinarySearchFunc(s.Elems, e, compareElems)
		if held || (i > 0 && compareElems(els[i-1], e) == 0) {
			if m.Header.Flags&netlink.Excl != 0 {
				return syscall.EEXIST
			}
			continue
		}
		added = append(added, e)
	}
	s.Elems = mergeElems(s.Elems, added)
	return 0
}

// delElems deletes the elements that DELSETELEM m lists from its set,
// each matched by its key and whether it ends a range; a missing one fails
// the message. Without a list it deletes them all (nft flush set).
func (s *State) delElems(m netlink.Message) syscall.Errno {
	set, errno := s.elemSet(m)
	if errno != 0 {
		return errno
	}
	if nlio.Attr(m, unix.NFTA_SET_ELEM_LIST_ELEMENTS) == nil {
		fam, table, name := family(set), nlio.StringAttr(set, attrTable), nlio.StringAttr(set, unix.NFTA_SET_NAME)
		s.Elems = slices.DeleteFunc(s.Elems, func(e Elem) bool { return e.Family == fam && e.Table == table && e.Set == name })
		return 0
	}
	els, err := elemsOf(m)
	if err != nil {
		return syscall.EINVAL
	}
	gone := make([]bool, len(s.Elems))
	for _, e := range els {
		i, held := slices.BinarySearchFunc(s.Elems, e, compareElems)
		if !held || gone[i] {
			return syscall.ENOENT
		}
		gone[i] = true
	}
	kept := s.Elems[:0:0]
	for i, e := range s.Elems {
		if !gone[i] {
			kept = append(kept, e)
		}
	}
	s.Elems = kept
	return 0
}

// elemSet returns the stored NEWSET of the set that NEWSETELEM or
// DELSETELEM m names, or ENOENT.
func (s *State) elemSet(m netlink.Message) (netlink.Message, syscall.Errno) {
	fam, table := family(m), nlio.StringAttr(m, unix.NFTA_SET_ELEM_LIST_TABLE)
	if s.tableIndex(fam, table) < 0 {
		return netlink.Message{}, syscall.ENOENT
	}
	i := find(s.Sets, fam, table, named(unix.NFTA_SET_NAME, nlio.StringAttr(m, unix.NFTA_SET_ELEM_LIST_SET)))
	if i < 0 {
		return netlink.Message{}, syscall.ENOENT
	}
	return s.Sets[i], 0
}

var errNoKey = errors.New("set element without a key")

// elemsOf decodes the elements that NEWSETELEM or DELSETELEM m lists. The
// kernel reads every attribute of the list as an element, whatever its
// type: google/nftables numbers them 1, 2, 3...
func elemsOf(m netlink.Message) ([]Elem, error) {
	fam := family(m)
	table := nlio.StringAttr(m, unix.NFTA_SET_ELEM_LIST_TABLE)
	set := nlio.StringAttr(m, unix.NFTA_SET_ELEM_LIST_SET)
	var els []Elem
	err := nlio.EachAttr(nlio.Attr(m, unix.NFTA_SET_ELEM_LIST_ELEMENTS), func(_ uint16, item []byte) error {
		e := Elem{Family: fam, Table: table, Set: set}
		var key, rest []byte
		err := nlio.EachAttr(item, func(typ uint16, data []byte) error {
			switch typ {
			case unix.NFTA_SET_ELEM_KEY:
				key = firstAttr(data, unix.NFTA_DATA_VALUE)
			case unix.NFTA_SET_ELEM_FLAGS:
				if len(data) != 4 {
					return errors.New("set element flags not of 4 bytes")
				}
				e.Flags = binary.BigEndian.Uint32(data)
			default:
				rest = nlio.AppendAttr(rest, typ, data)
			}
			return nil
		})
		if err == nil && key == nil {
			err = errNoKey
		}
		e.Key, e.Rest = string(key), string(rest)
		els = append(els, e)
		return err
	})
	return els, err
}

// keysFit reports whether every key of els is keyLen bytes long, as the
// kernel requires of the keys of a set declared with that length.
func keysFit(els []Elem, keyLen uint32) bool {
	return !slices.ContainsFunc(els, func(e Elem) bool { return uint32(len(e.Key)) != keyLen })
}

// compareElems orders elements as the fake holds and dumps them: by
// family, table, set and key, a range's end before a start at the same
// key. Elements that compare equal are the same element to the kernel.
func compareElems(a, b Elem) int {
	if c := cmp.Compare(a.Family, b.Family); c != 0 {
		return c
	}
	if c := strings.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	if c := strings.Compare(a.Set, b.Set); c != 0 {
		return c
	}
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return cmp.Compare(b.Flags&unix.NFT_SET_ELEM_INTERVAL_END, a.Flags&unix.NFT_SET_ELEM_INTERVAL_END)
}

// mergeElems returns held and added, both in compareElems order, merged in
// that order: added one message at a time, a set of 20,000 elements costs
// a pass over it per message rather than a sort.
func mergeElems(held, added []Elem) []Elem {
	if len(added) == 0 {
		return held
	}
	out := make([]Elem, 0, len(held)+len(added))
	for len(held) > 0 && len(added) > 0 {
		if compareElems(held[0], added[0]) < 0 {
			out, held = append(out, held[0]), held[1:]
		} else {
			out, added = append(out, added[0]), added[1:]
		}
	}
	return append(append(out, held...), added...)
}

// newObj creates a stateful object. NEWOBJ of an existing object (same
// name and type) changes nothing, as the kernel does for a ct helper,
// whose type cannot be updated; updates of counters, quotas and limits
// are not modelled.
func (s *State) newObj(m netlink.Message) syscall.Errno {
	fam, table, name := family(m), nlio.StringAttr(m, attrTable), nlio.StringAttr(m, unix.NFTA_OBJ_NAME)
	typ := nlio.Attr(m, unix.NFTA_OBJ_TYPE)
	t := s.tableIndex(fam, table)
	if t < 0 {
		return syscall.ENOENT
	}
	if name == "" || len(typ) != 4 {
		return syscall.EINVAL
	}
	if find(s.Objs, fam, table, both(named(unix.NFTA_OBJ_NAME, name), hasAttr(unix.NFTA_OBJ_TYPE, typ))) >= 0 {
		switch {
		case m.Header.Flags&netlink.Excl != 0:
			return syscall.EEXIST
		case m.Header.Flags&netlink.Replace != 0:
			return syscall.EOPNOTSUPP
		}
		return 0
	}
	handle := netlink.Attribute{Type: nftaObjHandle, Data: s.newHandle(t)}
	s.Objs = append(s.Objs, withAttrs(m, []uint16{nftaObjHandle}, handle))
	return 0
}

// delObj deletes a stateful object. It refuses while a rule of the table
// refers to it.
func (s *State) delObj(m netlink.Message) syscall.Errno {
	fam, table := family(m), nlio.StringAttr(m, attrTable)
	typ := nlio.Attr(m, unix.NFTA_OBJ_TYPE)
	if len(typ) != 4 {
		return syscall.EINVAL
	}
	if s.tableIndex(fam, table) < 0 {
		return syscall.ENOENT
	}
	i := find(s.Objs, fam, table, both(identified(m, unix.NFTA_OBJ_NAME, nftaObjHandle), hasAttr(unix.NFTA_OBJ_TYPE, typ)))
	if i < 0 {
		return syscall.ENOENT
	}
	r := ref{kind: refObj, name: nlio.StringAttr(s.Objs[i], unix.NFTA_OBJ_NAME), objType: binary.BigEndian.Uint32(typ)}
	if s.inUse(fam, table, r, "") {
		return syscall.EBUSY
	}
	s.Objs = slices.Delete(s.Objs, i, i+1)
	return 0
}

// tableIndex returns the index in s.Tables of table (fam, name), or -1.
func (s *State) tableIndex(fam byte, name string) int {
	return slices.IndexFunc(s.Tables, func(t Table) bool {
		return family(t.Msg) == fam && nlio.StringAttr(t.Msg, attrTable) == name
	})
}

// newHandle gives out the next handle of table s.Tables[t], as the
// kernel's nf_tables_alloc_handle does, encoded as dumps carry it.
func (s *State) newHandle(t int) []byte {
	s.Tables[t].LastHandle++
	return be64(s.Tables[t].LastHandle)
}

// find returns the index of the first message of list that belongs to
// table (fam, table) and matches, or -1.
func find(list []netlink.Message, fam byte, table string, match func(netlink.Message) bool) int {
	return slices.IndexFunc(list, func(m netlink.Message) bool {
		return family(m) == fam && nlio.StringAttr(m, attrTable) == table && match(m)
	})
}

// named matches a message whose string attribute typ is name.
func named(typ uint16, name string) func(netlink.Message) bool {
	return func(m netlink.Message) bool { return nlio.StringAttr(m, typ) == name }
}

// hasAttr matches a message whose attribute typ holds value.
func hasAttr(typ uint16, value []byte) func(netlink.Message) bool {
	return func(m netlink.Message) bool { return bytes.Equal(nlio.Attr(m, typ), value) }
}

func both(a, b func(netlink.Message) bool) func(netlink.Message) bool {
	return func(m netlink.Message) bool { return a(m) && b(m) }
}

// identified matches the thing that request m names, as the kernel looks
// it up: by its handle attribute when m carries one, else by its name.
func identified(m netlink.Message, nameAttr, handleAttr uint16) func(netlink.Message) bool {
	if h := nlio.Attr(m, handleAttr); h != nil {
		return hasAttr(handleAttr, h)
	}
	return named(nameAttr, nlio.StringAttr(m, nameAttr))
}

// refKind is the kind of thing a rule refers to by name.
type refKind int

const (
	refChain refKind = iota // jumped or gone to
	refSet                  // looked up or updated
	refObj                  // named by objref
)

// ref is a chain, set or object that a rule refers to by name.
type ref struct {
	kind    refKind
	name    string
	objType uint32 // NFT_OBJECT_* of an object
}

// refsOf decodes what rule m refers to by name: the chains its verdicts
// jump or go to (immediate), the sets it looks up (lookup) or updates
// (dynset), the objects it names (objref), the maps of objects it looks
// up (objref with a set).
func refsOf(m netlink.Message) []ref {
	var refs []ref
	_ = nlio.EachAttr(nlio.Attr(m, unix.NFTA_RULE_EXPRESSIONS), func(_ uint16, e []byte) error {
		data := firstAttr(e, unix.NFTA_EXPR_DATA)
		switch cstring(firstAttr(e, unix.NFTA_EXPR_NAME)) {
		case "immediate":
			verdict := firstAttr(firstAttr(data, unix.NFTA_IMMEDIATE_DATA), unix.NFTA_DATA_VERDICT)
			if c := cstring(firstAttr(verdict, unix.NFTA_VERDICT_CHAIN)); c != "" {
				refs = append(refs, ref{kind: refChain, name: c})
			}
		case "lookup":
			refs = append(refs, ref{kind: refSet, name: cstring(firstAttr(data, unix.NFTA_LOOKUP_SET))})
		case "dynset":
			refs = append(refs, ref{kind: refSet, name: cstring(firstAttr(data, unix.NFTA_DYNSET_SET_NAME))})
		case "objref":
			if name := cstring(firstAttr(data, unix.NFTA_OBJREF_IMM_NAME)); name != "" {
				refs = append(refs, ref{kind: refObj, name: name, objType: u32(firstAttr(data, nftaObjrefType))})
			}
			if set := cstring(firstAttr(data, unix.NFTA_OBJREF_SET_NAME)); set != "" {
				refs = append(refs, ref{kind: refSet, name: set})
			}
		}
		return nil
	})
	return refs
}

// resolves reports whether everything rule m refers to by name exists in
// table (fam, table), as the kernel requires when it initialises the
// rule's expressions (ENOENT otherwise).
func (s *State) resolves(fam byte, table string, m netlink.Message) bool {
	for _, r := range refsOf(m) {
		var found int
		switch r.kind {
		case refChain:
			found = find(s.Chains, fam, table, named(unix.NFTA_CHAIN_NAME, r.name))
		case refSet:
			found = find(s.Sets, fam, table, named(unix.NFTA_SET_NAME, r.name))
		case refObj:
			found = find(s.Objs, fam, table, both(named(unix.NFTA_OBJ_NAME, r.name), hasAttr(unix.NFTA_OBJ_TYPE, be32(r.objType))))
		}
		if found < 0 {
			return false
		}
	}
	return true
}

// inUse reports whether a rule of table (fam, table) refers to r, leaving
// out the rules of chain except: a chain's own rules go with it.
func (s *State) inUse(fam byte, table string, r ref, except string) bool {
	for _, rule := range s.Rules {
		if family(rule) != fam || nlio.StringAttr(rule, attrTable) != table {
			continue
		}
		if except != "" && nlio.StringAttr(rule, attrRuleChain) == except {
			continue
		}
		if slices.Contains(refsOf(rule), r) {
			return true
		}
	}
	return false
}

// withAttrs returns a copy of netfilter message m without its attributes
// of the types drop (flags aside), and with add after the others.
func withAttrs(m netlink.Message, drop []uint16, add ...netlink.Attribute) netlink.Message {
	attrs, _ := netlink.UnmarshalAttributes(m.Data[4:]) // apply refuses a malformed message
	attrs = slices.DeleteFunc(attrs, func(a netlink.Attribute) bool {
		return slices.Contains(drop, a.Type&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER))
	})
	data, _ := netlink.MarshalAttributes(append(attrs, add...))
	out := m
	out.Data = append(bytes.Clone(m.Data[:4]), data...)
	return out
}

// firstAttr returns the payload of the first attribute typ among the
// attributes b holds, or nil.
func firstAttr(b []byte, typ uint16) []byte {
	var out []byte
	_ = nlio.EachAttr(b, func(t uint16, data []byte) error {
		if t == typ && out == nil {
			out = data
		}
		return nil
	})
	return out
}

// u32Attr returns the big-endian 32-bit attribute typ of m, or 0.
func u32Attr(m netlink.Message, typ uint16) uint32 { return u32(nlio.Attr(m, typ)) }

func u32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func cstring(b []byte) string { return strings.TrimRight(string(b), "\x00") }

// batchGeneration returns the NFNL_BATCH_GENID of a batch begin message, or 0.
func batchGeneration(m netlink.Message) uint32 {
	if id := nlio.Attr(m, unix.NFNL_BATCH_GENID); len(id) == 4 {
		return binary.BigEndian.Uint32(id)
	}
	return 0
}
