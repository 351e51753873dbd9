package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
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
	// sets counts the sets added, which number them in the batch.
	sets uint32
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

// enqueue adds the messages that fill table with rs to c's batch: its
// objects and sets, every chain (so that jumps find their target), then the
// rules.
func enqueue(c *batch, rs *Ruleset, table *nftables.Table) error {
	for _, h := range rs.Helpers {
		c.AddObj(helperObject(table, h))
	}
	for _, s := range rs.Sets {
		if err := addSet(c, table, s); err != nil {
			return err
		}
	}
	chains := make([]*nftables.Chain, len(rs.Chains))
	for i, ch := range rs.Chains {
		chains[i] = addChain(c, table, ch)
	}
	for i, ch := range rs.Chains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: chains[i], Exprs: r.exprs(), UserData: r.userData()})
		}
	}
	return nil
}

// helperObject is the ct helper object h in table.
func helperObject(table *nftables.Table, h Helper) *nftables.NamedObj {
	return &nftables.NamedObj{
		Table: table,
		Name:  h.Name,
		Type:  nftables.ObjTypeCtHelper,
		Obj: &expr.CtHelper{
			Name:    h.Type,
			L3Proto: unix.NFPROTO_INET,
			L4Proto: protoNumbers[h.Protocol],
		},
	}
}

// addChain queues NFT_MSG_NEWCHAIN for ch: a new chain, or, for a base
// chain that exists with the same hook and priority, its policy.
func addChain(b *batch, table *nftables.Table, ch Chain) *nftables.Chain {
	chain := &nftables.Chain{Name: ch.Name, Table: table}
	if ch.Hook != "" {
		chain.Type = nftables.ChainType(ch.Type)
		chain.Hooknum = nftables.ChainHookRef(hookNumbers[ch.Hook])
		chain.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority))
		chain.Policy = policyRef(ch.Policy)
	}
	return b.AddChain(chain)
}

// setChunk is how many set elements go into one netlink message: all of a
// large set in one message exceeds what a message can hold. The chunks stay
// in the same batch, so the set still appears whole or not at all.
const setChunk = 1000

func addSet(b *batch, table *nftables.Table, s Set) error {
	set := &nftables.Set{
		Table:      table,
		Name:       s.Name,
		KeyType:    nftables.TypeIPAddr,
		Interval:   s.Interval,
		Dynamic:    s.Dynamic,
		HasTimeout: s.Timeout > 0 || s.Runtime,
		Timeout:    s.Timeout,
		Size:       s.Size,
	}
	if s.V6 {
		set.KeyType = nftables.TypeIP6Addr
	}
	// Numbered here: google/nftables v0.3.0 numbers sets from a package
	// counter that it does not guard, which two Apply calls at once race
	// on. Rules refer to sets by name; the number only has to be unique
	// in the batch.
	b.sets++
	set.ID = b.sets
	if err := b.AddSet(set, nil); err != nil {
		return err
	}
	return addElements(b, elementsAdd, table.Name, s.Name, s.elements())
}

// The two messages that change a set's elements.
const (
	elementsAdd    = unix.NFT_MSG_NEWSETELEM
	elementsDelete = unix.NFT_MSG_DELSETELEM
)

// addElements queues messages of type typ (elementsAdd or elementsDelete)
// for els, setChunk a message.
func addElements(b *batch, typ uint16, table, set string, els []element) error {
	for len(els) > 0 {
		n := min(setChunk, len(els))
		if err := b.add(elementsMessage(typ, table, set, els[:n])); err != nil {
			return err
		}
		els = els[n:]
	}
	return nil
}

func policyRef(p Policy) *nftables.ChainPolicy {
	v := nftables.ChainPolicyAccept
	if p == PolicyDrop {
		v = nftables.ChainPolicyDrop
	}
	return &v
}

// tableMessage is NFT_MSG_NEWTABLE for an inet table with user data.
func tableMessage(name string, udata []byte) netlink.Message {
	b := []byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}
	b = nlio.AppendAttr(b, unix.NFTA_TABLE_NAME, cstring(name))
	b = nlio.AppendAttr(b, unix.NFTA_TABLE_FLAGS, make([]byte, 4))
	b = nlio.AppendAttr(b, nftaTableUserdata, udata)
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create,
		},
		Data: b,
	}
}

// Interval set elements are encoded (and read back, observed.go) by ftpnft
// rather than with google/nftables: a 10,000-source allowlist is 20,000
// elements, and its generic encoder and decoder (a slice of attributes and
// several allocations per element) cost more than the kernel's own work on
// them.

// elementsMessage is an NFT_MSG_NEWSETELEM that adds els to set in table,
// or an NFT_MSG_DELSETELEM that deletes them (typ), encoded as nft encodes
// it.
func elementsMessage(typ uint16, table, set string, els []element) netlink.Message {
	// nfgenmsg, table, set, the list's header
	size := 4 + unix.NLA_HDRLEN + nlio.Align(len(table)+1) + unix.NLA_HDRLEN + nlio.Align(len(set)+1) + unix.NLA_HDRLEN
	for _, e := range els {
		size += 3*unix.NLA_HDRLEN + e.Key.BitLen()/8 // element, key, value
		if e.IntervalEnd {
			size += unix.NLA_HDRLEN + 4 // flags
		}
		if e.Timeout > 0 {
			size += unix.NLA_HDRLEN + 8
		}
	}
	b := make([]byte, 0, size)
	b = append(b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	b = nlio.AppendAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, cstring(table))
	b = nlio.AppendAttr(b, unix.NFTA_SET_ELEM_LIST_SET, cstring(set))
	list := nlio.BeginNest(&b, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
	var end [4]byte
	binary.BigEndian.PutUint32(end[:], unix.NFT_SET_ELEM_INTERVAL_END)
	for _, e := range els {
		item := nlio.BeginNest(&b, unix.NFTA_LIST_ELEM)
		if e.IntervalEnd {
			b = nlio.AppendAttr(b, unix.NFTA_SET_ELEM_FLAGS, end[:])
		}
		if e.Timeout > 0 && typ == elementsAdd {
			b = nlio.AppendAttr(b, unix.NFTA_SET_ELEM_TIMEOUT, binary.BigEndian.AppendUint64(nil, uint64(e.Timeout.Milliseconds())))
		}
		key := nlio.BeginNest(&b, unix.NFTA_SET_ELEM_KEY)
		k := e.Key.As16()
		b = nlio.AppendAttr(b, unix.NFTA_DATA_VALUE, k[16-e.Key.BitLen()/8:])
		nlio.EndNest(b, key)
		nlio.EndNest(b, item)
	}
	nlio.EndNest(b, list)
	flags := netlink.Request | netlink.Acknowledge
	if typ == elementsAdd {
		flags |= netlink.Create
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
			Flags: flags,
		},
		Data: b,
	}
}

func cstring(s string) []byte { return append([]byte(s), 0) }

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

// describe says what a batch message asks of the kernel, in nft's words.
func describe(m netlink.Message) string {
	switch uint16(m.Header.Type) & 0xff {
	case unix.NFT_MSG_NEWTABLE:
		return "add table inet " + nlio.StringAttr(m, unix.NFTA_TABLE_NAME)
	case unix.NFT_MSG_DELTABLE:
		return "delete table inet " + nlio.StringAttr(m, unix.NFTA_TABLE_NAME)
	case unix.NFT_MSG_NEWOBJ:
		return "add object " + nlio.StringAttr(m, unix.NFTA_OBJ_NAME)
	case unix.NFT_MSG_NEWSET:
		return "add set " + nlio.StringAttr(m, unix.NFTA_SET_NAME)
	case unix.NFT_MSG_NEWSETELEM:
		return "add elements to set " + nlio.StringAttr(m, unix.NFTA_SET_ELEM_LIST_SET)
	case unix.NFT_MSG_NEWCHAIN:
		return "add chain " + nlio.StringAttr(m, unix.NFTA_CHAIN_NAME)
	case unix.NFT_MSG_NEWRULE:
		s := "add rule to chain " + nlio.StringAttr(m, unix.NFTA_RULE_CHAIN)
		if h := handleAttr(m, unix.NFTA_RULE_HANDLE); h != 0 {
			s = fmt.Sprintf("replace rule handle %d in chain %s", h, nlio.StringAttr(m, unix.NFTA_RULE_CHAIN))
		}
		if c := commentOf(nlio.Attr(m, unix.NFTA_RULE_USERDATA)); c != "" {
			s += fmt.Sprintf(" (comment %q)", c)
		}
		return s
	case unix.NFT_MSG_DELRULE:
		if h := handleAttr(m, unix.NFTA_RULE_HANDLE); h != 0 {
			return fmt.Sprintf("delete rule handle %d in chain %s", h, nlio.StringAttr(m, unix.NFTA_RULE_CHAIN))
		}
		return "flush chain " + nlio.StringAttr(m, unix.NFTA_RULE_CHAIN)
	case unix.NFT_MSG_DELCHAIN:
		return "delete chain " + nlio.StringAttr(m, unix.NFTA_CHAIN_NAME)
	case unix.NFT_MSG_DELSET:
		return "delete set " + nlio.StringAttr(m, unix.NFTA_SET_NAME)
	case unix.NFT_MSG_DELOBJ:
		return "delete object " + nlio.StringAttr(m, unix.NFTA_OBJ_NAME)
	case unix.NFT_MSG_DELSETELEM:
		return "delete elements from set " + nlio.StringAttr(m, unix.NFTA_SET_ELEM_LIST_SET)
	}
	return fmt.Sprintf("message type %d", uint16(m.Header.Type)&0xff)
}

// handleAttr returns the handle (a big-endian 64-bit attribute) of type typ
// in m, or 0.
func handleAttr(m netlink.Message, typ uint16) uint64 {
	if v := nlio.Attr(m, typ); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
