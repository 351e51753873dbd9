package fakekernel

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// The tests build batches by hand, to choose each message's flags, and
// read what the fake holds through google/nftables where it can, as nft's
// own tests do. Everything lives in table inet "t".

const (
	inet     = unix.NFPROTO_INET
	create   = netlink.Request | netlink.Acknowledge | netlink.Create
	excl     = create | netlink.Excl
	appendTo = create | netlink.Append | unix.NLM_F_ECHO // google/nftables' AddRule
	insert   = create | unix.NLM_F_ECHO                  // its InsertRule
	replace  = netlink.Request | netlink.Acknowledge | netlink.Replace | unix.NLM_F_ECHO
	del      = netlink.Request | netlink.Acknowledge
)

// nfMsg is an nf_tables message of type typ for family inet.
func nfMsg(typ uint16, flags netlink.HeaderFlags, attrs ...netlink.Attribute) netlink.Message {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		panic(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: flags},
		Data:   append([]byte{inet, unix.NFNETLINK_V0, 0, 0}, data...),
	}
}

func str(typ uint16, s string) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: append([]byte(s), 0)}
}
func u32a(typ uint16, v uint32) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: be32(v)}
}
func u64a(typ uint16, v uint64) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: be64(v)}
}
func nest(typ uint16, attrs ...netlink.Attribute) netlink.Attribute {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		panic(err)
	}
	return netlink.Attribute{Type: typ | unix.NLA_F_NESTED, Data: data}
}

func newTable(name string) netlink.Message {
	return nfMsg(unix.NFT_MSG_NEWTABLE, create, str(unix.NFTA_TABLE_NAME, name))
}

func newChain(flags netlink.HeaderFlags, name string) netlink.Message {
	return nfMsg(unix.NFT_MSG_NEWCHAIN, flags, str(unix.NFTA_CHAIN_TABLE, "t"), str(unix.NFTA_CHAIN_NAME, name))
}

// newBaseChain is a filter chain at hook with priority and policy.
func newBaseChain(flags netlink.HeaderFlags, name string, hook uint32, priority int32, policy uint32) netlink.Message {
	return nfMsg(unix.NFT_MSG_NEWCHAIN, flags, str(unix.NFTA_CHAIN_TABLE, "t"), str(unix.NFTA_CHAIN_NAME, name),
		nest(unix.NFTA_CHAIN_HOOK, u32a(unix.NFTA_HOOK_HOOKNUM, hook), u32a(unix.NFTA_HOOK_PRIORITY, uint32(priority))),
		str(unix.NFTA_CHAIN_TYPE, "filter"), u32a(unix.NFTA_CHAIN_POLICY, policy))
}

// newRule is a rule of chain named by its user data, with handle and
// position when they are not 0.
func newRule(flags netlink.HeaderFlags, chain, name string, handle, position uint64, exprs ...expr.Any) netlink.Message {
	attrs := []netlink.Attribute{str(unix.NFTA_RULE_TABLE, "t"), str(unix.NFTA_RULE_CHAIN, chain)}
	if handle != 0 {
		attrs = append(attrs, u64a(unix.NFTA_RULE_HANDLE, handle))
	}
	if position != 0 {
		attrs = append(attrs, u64a(unix.NFTA_RULE_POSITION, position))
	}
	var list []netlink.Attribute
	for _, e := range exprs {
		b, err := expr.Marshal(inet, e)
		if err != nil {
			panic(err)
		}
		list = append(list, netlink.Attribute{Type: unix.NFTA_LIST_ELEM | unix.NLA_F_NESTED, Data: b})
	}
	attrs = append(attrs, nest(unix.NFTA_RULE_EXPRESSIONS, list...), netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: []byte(name)})
	return nfMsg(unix.NFT_MSG_NEWRULE, flags, attrs...)
}

func delRule(chain string, handle uint64) netlink.Message {
	return nfMsg(unix.NFT_MSG_DELRULE, del, str(unix.NFTA_RULE_TABLE, "t"), str(unix.NFTA_RULE_CHAIN, chain), u64a(unix.NFTA_RULE_HANDLE, handle))
}

// newSet is a set of IPv4 addresses, with setFlags (NFT_SET_*).
func newSet(flags netlink.HeaderFlags, name string, setFlags uint32) netlink.Message {
	return nfMsg(unix.NFT_MSG_NEWSET, flags, str(unix.NFTA_SET_TABLE, "t"), str(unix.NFTA_SET_NAME, name),
		u32a(unix.NFTA_SET_FLAGS, setFlags), u32a(unix.NFTA_SET_KEY_TYPE, 7), u32a(unix.NFTA_SET_KEY_LEN, 4), u32a(unix.NFTA_SET_ID, 1))
}

// elems is a NEWSETELEM or DELSETELEM (typ) of set with els: each a key
// and "end" for a range's end. The list is numbered 1, 2, 3... as
// google/nftables numbers it.
func elems(typ uint16, flags netlink.HeaderFlags, set string, els ...string) netlink.Message {
	var list []netlink.Attribute
	for i, e := range els {
		key, end := strings.CutSuffix(e, " end")
		item := []netlink.Attribute{nest(unix.NFTA_SET_ELEM_KEY, netlink.Attribute{Type: unix.NFTA_DATA_VALUE, Data: ip4(key)})}
		if end {
			item = append(item, u32a(unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END))
		}
		list = append(list, nest(uint16(i+1), item...))
	}
	return nfMsg(typ, flags, str(unix.NFTA_SET_ELEM_LIST_TABLE, "t"), str(unix.NFTA_SET_ELEM_LIST_SET, set), nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS, list...))
}

func ip4(s string) []byte {
	var a [4]byte
	if _, err := fmt.Sscanf(s, "%d.%d.%d.%d", &a[0], &a[1], &a[2], &a[3]); err != nil {
		panic(err)
	}
	return a[:]
}

// newHelper is a ct helper object; data tells two versions apart.
func newHelper(flags netlink.HeaderFlags, name, data string) netlink.Message {
	return nfMsg(unix.NFT_MSG_NEWOBJ, flags, str(unix.NFTA_OBJ_TABLE, "t"), str(unix.NFTA_OBJ_NAME, name),
		u32a(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_CT_HELPER), nest(unix.NFTA_OBJ_DATA, str(unix.NFTA_CT_HELPER_NAME, data)))
}

// delNamed deletes the chain, set or object (typ) named name.
func delNamed(typ uint16, name string) netlink.Message {
	switch typ {
	case unix.NFT_MSG_DELCHAIN:
		return nfMsg(typ, del, str(unix.NFTA_CHAIN_TABLE, "t"), str(unix.NFTA_CHAIN_NAME, name))
	case unix.NFT_MSG_DELSET:
		return nfMsg(typ, del, str(unix.NFTA_SET_TABLE, "t"), str(unix.NFTA_SET_NAME, name))
	}
	return nfMsg(typ, del, str(unix.NFTA_OBJ_TABLE, "t"), str(unix.NFTA_OBJ_NAME, name), u32a(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_CT_HELPER))
}

var (
	jumpTo = func(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
	lookup = func(set string) expr.Any { return &expr.Lookup{SourceRegister: 1, SetName: set} }
	dynset = func(set string) expr.Any {
		return &expr.Dynset{SrcRegKey: 1, SetName: set, Operation: uint32(unix.NFT_DYNSET_OP_ADD)}
	}
	helper = func(name string) expr.Any { return &expr.Objref{Type: unix.NFT_OBJECT_CT_HELPER, Name: name} }
)

// send sends msgs as one batch and returns the errno of each.
func send(t *testing.T, k *Kernel, msgs ...netlink.Message) []syscall.Errno {
	t.Helper()
	batch := []netlink.Message{{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN, Flags: netlink.Request}, Data: []byte{0, 0, 0, unix.NFNL_SUBSYS_NFTABLES}}}
	for i, m := range msgs {
		m.Header.Sequence = uint32(i + 1)
		m.Header.Flags |= netlink.Acknowledge
		batch = append(batch, m)
	}
	batch = append(batch, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END, Flags: netlink.Request}, Data: []byte{0, 0, 0, unix.NFNL_SUBSYS_NFTABLES}})
	acks, err := k.Dial(batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != len(msgs) {
		t.Fatalf("%d answers to %d messages", len(acks), len(msgs))
	}
	out := make([]syscall.Errno, len(acks))
	for i, a := range acks {
		errno, ok := nlio.Errno(a)
		if !ok || a.Header.Sequence != uint32(i+1) {
			t.Fatalf("answer %d: %+v", i, a)
		}
		out[i] = errno
	}
	return out
}

// mustSend sends msgs as one batch that must succeed.
func mustSend(t *testing.T, k *Kernel, msgs ...netlink.Message) {
	t.Helper()
	for i, errno := range send(t, k, msgs...) {
		if errno != 0 {
			t.Fatalf("message %d: %v", i, errno)
		}
	}
}

// sendOne sends m in a batch of its own and returns its errno.
func sendOne(t *testing.T, k *Kernel, m netlink.Message) syscall.Errno {
	t.Helper()
	return send(t, k, m)[0]
}

// rules returns the rules of chain as google/nftables reads them:
// "name#handle" each.
func rules(t *testing.T, k *Kernel, chain string) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := c.GetRules(&nftables.Table{Family: nftables.TableFamilyINet, Name: "t"}, &nftables.Chain{Name: chain})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s#%d", r.UserData, r.Handle))
	}
	return out
}

// handle returns the 64-bit handle attribute typ of stored message m.
func handle(m netlink.Message, typ uint16) uint64 {
	if b := nlio.Attr(m, typ); len(b) == 8 {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// elemStrings returns the elements of set as google/nftables reads them:
// an address each, with " end" for a range's end.
func elemStrings(t *testing.T, k *Kernel, set string) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	els, err := c.GetSetElements(&nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: "t"}, Name: set})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range els {
		s := fmt.Sprintf("%d.%d.%d.%d", e.Key[0], e.Key[1], e.Key[2], e.Key[3])
		if e.IntervalEnd {
			s += " end"
		}
		out = append(out, s)
	}
	return out
}

// Every chain, rule, set and object gets the next handle of its table,
// from 1; a new table starts again. Dumps carry them, and
// google/nftables reads a rule's.
func TestHandles(t *testing.T) {
	k := &Kernel{}
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "t"})
	ch := c.AddChain(&nftables.Chain{Table: tbl, Name: "c"})
	set := &nftables.Set{Table: tbl, Name: "s", KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(set, nil); err != nil {
		t.Fatal(err)
	}
	c.AddObj(&nftables.NamedObj{Table: tbl, Name: "h", Type: nftables.ObjTypeCtHelper, Obj: &expr.CtHelper{Name: "ftp", L3Proto: unix.NFPROTO_INET, L4Proto: unix.IPPROTO_TCP}})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, UserData: []byte("a")})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, UserData: []byte("b")})
	other := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "u"})
	c.AddChain(&nftables.Chain{Table: other, Name: "c"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	s := k.State
	got := []uint64{
		handle(s.Tables[0].Msg, nftaTableHandle), handle(s.Tables[1].Msg, nftaTableHandle),
		handle(s.Chains[0], unix.NFTA_CHAIN_HANDLE), handle(s.Sets[0], nftaSetHandle), handle(s.Objs[0], nftaObjHandle),
		handle(s.Chains[1], unix.NFTA_CHAIN_HANDLE),
	}
	if want := []uint64{1, 2, 1, 2, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("handles of tables t, u, chain c, set s, object h, chain u/c = %v, want %v", got, want)
	}
	if got, want := rules(t, k, "c"), []string{"a#4", "b#5"}; !slices.Equal(got, want) {
		t.Errorf("rules = %q, want %q", got, want)
	}
	// A batch that fails leaves the counter where it was.
	if errno := send(t, k, newChain(create, "d"), newChain(excl, "c")); errno[1] != syscall.EEXIST {
		t.Fatalf("a chain added twice with NLM_F_EXCL: %v", errno)
	}
	mustSend(t, k, newChain(create, "d"))
	if h := handle(k.State.Chains[2], unix.NFTA_CHAIN_HANDLE); h != 6 {
		t.Errorf("handle after a failed batch = %d, want 6", h)
	}
	// Deleting and recreating a table starts its handles again.
	mustSend(t, k, nfMsg(unix.NFT_MSG_DELTABLE, del, str(unix.NFTA_TABLE_NAME, "t")), newTable("t"), newChain(create, "c"))
	if h := handle(k.State.Chains[len(k.State.Chains)-1], unix.NFTA_CHAIN_HANDLE); h != 1 || handle(k.State.Tables[1].Msg, nftaTableHandle) != 3 {
		t.Errorf("recreated table: chain handle %d, table handle %d; want 1, 3", h, handle(k.State.Tables[1].Msg, nftaTableHandle))
	}
}

// newRuleKernel holds chain c with rules a, b, c (handles 2, 3, 4), chain
// d (handle 5), and set s (handle 6).
func newRuleKernel(t *testing.T) *Kernel {
	t.Helper()
	k := &Kernel{}
	mustSend(t, k, newTable("t"), newChain(create, "c"),
		newRule(appendTo, "c", "a", 0, 0), newRule(appendTo, "c", "b", 0, 0), newRule(appendTo, "c", "c", 0, 0),
		newChain(create, "d"), newSet(create, "s", 0))
	return k
}

func TestNewRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		msg   netlink.Message
		errno syscall.Errno
		want  []string // rules of chain c after
	}{
		{"append", newRule(appendTo, "c", "x", 0, 0), 0, []string{"a#2", "b#3", "c#4", "x#7"}},
		{"insert", newRule(insert, "c", "x", 0, 0), 0, []string{"x#7", "a#2", "b#3", "c#4"}},
		{"append after b", newRule(appendTo, "c", "x", 0, 3), 0, []string{"a#2", "b#3", "x#7", "c#4"}},
		{"insert before b", newRule(insert, "c", "x", 0, 3), 0, []string{"a#2", "x#7", "b#3", "c#4"}},
		{"append after the last", newRule(appendTo, "c", "x", 0, 4), 0, []string{"a#2", "b#3", "c#4", "x#7"}},
		{"insert before the first", newRule(insert, "c", "x", 0, 2), 0, []string{"x#7", "a#2", "b#3", "c#4"}},
		{"replace b", newRule(replace, "c", "x", 3, 0), 0, []string{"a#2", "x#3", "c#4"}},
		{"replace with a rule that jumps", newRule(replace, "c", "x", 3, 0, jumpTo("d")), 0, []string{"a#2", "x#3", "c#4"}},
		{"append with a lookup", newRule(appendTo, "c", "x", 0, 0, lookup("s")), 0, []string{"a#2", "b#3", "c#4", "x#7"}},
		{"position not in the chain", newRule(appendTo, "c", "x", 0, 5), syscall.ENOENT, nil},
		{"replace a missing rule", newRule(replace, "c", "x", 9, 0), syscall.ENOENT, nil},
		{"replace a rule of another chain", newRule(replace, "d", "x", 3, 0), syscall.ENOENT, nil},
		{"handle without NLM_F_REPLACE", newRule(appendTo, "c", "x", 3, 0), syscall.EOPNOTSUPP, nil},
		{"handle with NLM_F_EXCL", newRule(replace|netlink.Excl, "c", "x", 3, 0), syscall.EEXIST, nil},
		{"no handle, no NLM_F_CREATE", newRule(del, "c", "x", 0, 0), syscall.EINVAL, nil},
		{"no handle, NLM_F_REPLACE", newRule(create|netlink.Replace, "c", "x", 0, 0), syscall.EINVAL, nil},
		{"missing chain", newRule(appendTo, "e", "x", 0, 0), syscall.ENOENT, nil},
		{"jump to a missing chain", newRule(appendTo, "c", "x", 0, 0, jumpTo("e")), syscall.ENOENT, nil},
		{"lookup of a missing set", newRule(appendTo, "c", "x", 0, 0, lookup("e")), syscall.ENOENT, nil},
		{"missing ct helper", newRule(appendTo, "c", "x", 0, 0, helper("e")), syscall.ENOENT, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newRuleKernel(t)
			before := k.State.Clone()
			if errno := sendOne(t, k, tc.msg); errno != tc.errno {
				t.Fatalf("errno %v, want %v", errno, tc.errno)
			}
			if tc.errno != 0 {
				if !reflect.DeepEqual(k.State, before) {
					t.Fatal("a failed batch changed the state")
				}
				return
			}
			if got := rules(t, k, "c"); !slices.Equal(got, tc.want) {
				t.Fatalf("rules %q, want %q", got, tc.want)
			}
		})
	}
}

// Several rules after one: each sent right after the anchor, last first,
// as package nft sends them; and a rule replaced, then another put after
// it, in one batch.
func TestNewRulesInOneBatch(t *testing.T) {
	k := newRuleKernel(t)
	mustSend(t, k, newRule(appendTo, "c", "y", 0, 2), newRule(appendTo, "c", "x", 0, 2),
		newRule(replace, "c", "B", 3, 0), newRule(appendTo, "c", "z", 0, 3))
	if got, want := rules(t, k, "c"), []string{"a#2", "x#8", "y#7", "B#3", "z#9", "c#4"}; !slices.Equal(got, want) {
		t.Fatalf("rules %q, want %q", got, want)
	}
}

// A dump gives each rule but the first of its chain the handle of the one
// before it as NFTA_RULE_POSITION, chain by chain in the chains' order.
func TestRuleDump(t *testing.T) {
	k := newRuleKernel(t)
	mustSend(t, k, newRule(appendTo, "d", "x", 0, 0), newRule(insert, "c", "w", 0, 0))
	msgs, err := k.Dial([]netlink.Message{nfMsg(unix.NFT_MSG_GETRULE, netlink.Request|netlink.Dump, str(unix.NFTA_RULE_TABLE, "t"))})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs[:len(msgs)-1] {
		got = append(got, fmt.Sprintf("%s %s#%d after %d", nlio.StringAttr(m, unix.NFTA_RULE_CHAIN), nlio.Attr(m, unix.NFTA_RULE_USERDATA),
			handle(m, unix.NFTA_RULE_HANDLE), handle(m, unix.NFTA_RULE_POSITION)))
	}
	want := []string{"c w#8 after 0", "c a#2 after 8", "c b#3 after 2", "c c#4 after 3", "d x#7 after 0"}
	if !slices.Equal(got, want) {
		t.Fatalf("dump %q, want %q", got, want)
	}
}

func TestDelRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		msg   netlink.Message
		errno syscall.Errno
		want  []string
	}{
		{"by handle", delRule("c", 3), 0, []string{"a#2", "c#4"}},
		{"missing handle", delRule("c", 9), syscall.ENOENT, nil},
		{"handle of another chain", delRule("d", 3), syscall.ENOENT, nil},
		{"missing chain", delRule("e", 3), syscall.ENOENT, nil},
		{"flush chain", nfMsg(unix.NFT_MSG_DELRULE, del, str(unix.NFTA_RULE_TABLE, "t"), str(unix.NFTA_RULE_CHAIN, "c")), 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newRuleKernel(t)
			before := k.State.Clone()
			if errno := sendOne(t, k, tc.msg); errno != tc.errno {
				t.Fatalf("errno %v, want %v", errno, tc.errno)
			}
			if tc.errno != 0 {
				if !reflect.DeepEqual(k.State, before) {
					t.Fatal("a failed batch changed the state")
				}
				return
			}
			if got := rules(t, k, "c"); !slices.Equal(got, tc.want) {
				t.Fatalf("rules %q, want %q", got, tc.want)
			}
		})
	}
	// A rule deleted twice in one batch is missing the second time.
	k := newRuleKernel(t)
	if errno := send(t, k, delRule("c", 3), delRule("c", 3)); errno[0] != 0 || errno[1] != syscall.ENOENT {
		t.Fatalf("rule deleted twice: %v", errno)
	}
}

// newChainKernel holds base chain in (input, priority 0, accept) with
// rule a, and chain c.
func newChainKernel(t *testing.T) *Kernel {
	t.Helper()
	k := &Kernel{}
	mustSend(t, k, newTable("t"), newBaseChain(create, "in", unix.NF_INET_LOCAL_IN, 0, nfAccept), newRule(appendTo, "in", "a", 0, 0), newChain(create, "c"))
	return k
}

func TestChainUpdate(t *testing.T) {
	policy := func(k *Kernel) uint32 { return u32Attr(k.State.Chains[0], unix.NFTA_CHAIN_POLICY) }
	for _, tc := range []struct {
		name   string
		msg    netlink.Message
		errno  syscall.Errno
		policy uint32 // of chain in after
	}{
		{"policy changed in place", newBaseChain(create, "in", unix.NF_INET_LOCAL_IN, 0, nfDrop), 0, nfDrop},
		{"same chain again", newBaseChain(create, "in", unix.NF_INET_LOCAL_IN, 0, nfAccept), 0, nfAccept},
		{"policy alone", nfMsg(unix.NFT_MSG_NEWCHAIN, create, str(unix.NFTA_CHAIN_TABLE, "t"), str(unix.NFTA_CHAIN_NAME, "in"), u32a(unix.NFTA_CHAIN_POLICY, nfDrop)), 0, nfDrop},
		{"by handle", nfMsg(unix.NFT_MSG_NEWCHAIN, create, str(unix.NFTA_CHAIN_TABLE, "t"), u64a(unix.NFTA_CHAIN_HANDLE, 1), u32a(unix.NFTA_CHAIN_POLICY, nfDrop)), 0, nfDrop},
		{"regular chain again", newChain(create, "c"), 0, nfAccept},
		// nf_tables_updchain cannot move a chain: EEXIST, since Linux 5.5.
		{"priority changed", newBaseChain(create, "in", unix.NF_INET_LOCAL_IN, 10, nfDrop), syscall.EEXIST, 0},
		{"hook changed", newBaseChain(create, "in", unix.NF_INET_FORWARD, 0, nfDrop), syscall.EEXIST, 0},
		{"hook given to a regular chain", newBaseChain(create, "c", unix.NF_INET_LOCAL_IN, 0, nfAccept), syscall.EOPNOTSUPP, 0},
		{"NLM_F_EXCL", newBaseChain(excl, "in", unix.NF_INET_LOCAL_IN, 0, nfDrop), syscall.EEXIST, 0},
		{"NLM_F_REPLACE", newBaseChain(create|netlink.Replace, "in", unix.NF_INET_LOCAL_IN, 0, nfDrop), syscall.EOPNOTSUPP, 0},
		{"policy of a regular chain", nfMsg(unix.NFT_MSG_NEWCHAIN, create, str(unix.NFTA_CHAIN_TABLE, "t"), str(unix.NFTA_CHAIN_NAME, "c"), u32a(unix.NFTA_CHAIN_POLICY, nfDrop)), syscall.EOPNOTSUPP, 0},
		{"policy of a new regular chain", nfMsg(unix.NFT_MSG_NEWCHAIN, create, str(unix.NFTA_CHAIN_TABLE, "t"), str(unix.NFTA_CHAIN_NAME, "e"), u32a(unix.NFTA_CHAIN_POLICY, nfDrop)), syscall.EOPNOTSUPP, 0},
		{"policy neither accept nor drop", newBaseChain(create, "in", unix.NF_INET_LOCAL_IN, 0, 3), syscall.EINVAL, 0},
		{"missing handle", nfMsg(unix.NFT_MSG_NEWCHAIN, create, str(unix.NFTA_CHAIN_TABLE, "t"), u64a(unix.NFTA_CHAIN_HANDLE, 9)), syscall.ENOENT, 0},
		{"missing table", nfMsg(unix.NFT_MSG_NEWCHAIN, create, str(unix.NFTA_CHAIN_TABLE, "u"), str(unix.NFTA_CHAIN_NAME, "c")), syscall.ENOENT, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newChainKernel(t)
			before := k.State.Clone()
			if errno := sendOne(t, k, tc.msg); errno != tc.errno {
				t.Fatalf("errno %v, want %v", errno, tc.errno)
			}
			if tc.errno != 0 {
				if !reflect.DeepEqual(k.State, before) {
					t.Fatal("a failed batch changed the state")
				}
				return
			}
			if got := policy(k); got != tc.policy {
				t.Errorf("policy %d, want %d", got, tc.policy)
			}
			// Updated in place: same handle, same place, rules kept.
			if len(k.State.Chains) != 2 || handle(k.State.Chains[0], unix.NFTA_CHAIN_HANDLE) != 1 || handle(k.State.Chains[1], unix.NFTA_CHAIN_HANDLE) != 3 {
				t.Errorf("chains after the update: %d, handles %d, %d", len(k.State.Chains), handle(k.State.Chains[0], unix.NFTA_CHAIN_HANDLE), handle(k.State.Chains[1], unix.NFTA_CHAIN_HANDLE))
			}
			if got := rules(t, k, "in"); !slices.Equal(got, []string{"a#2"}) {
				t.Errorf("rules of the updated chain: %q", got)
			}
		})
	}
}

func TestDelChain(t *testing.T) {
	jumpFromIn := newRule(appendTo, "in", "j", 0, 0, jumpTo("c")) // handle 5, after chain in2
	for _, tc := range []struct {
		name   string
		setup  []netlink.Message // a batch of its own before
		msgs   []netlink.Message
		errnos []syscall.Errno
		chains int // left after
	}{
		{"unused", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELCHAIN, "c")}, []syscall.Errno{0}, 1},
		{"with its rules", []netlink.Message{newRule(appendTo, "c", "x", 0, 0, jumpTo("in2"))},
			[]netlink.Message{delNamed(unix.NFT_MSG_DELCHAIN, "c")}, []syscall.Errno{0}, 1},
		{"base chain with its rules", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELCHAIN, "in")}, []syscall.Errno{0}, 1},
		{"by handle", nil, []netlink.Message{nfMsg(unix.NFT_MSG_DELCHAIN, del, str(unix.NFTA_CHAIN_TABLE, "t"), u64a(unix.NFTA_CHAIN_HANDLE, 3))}, []syscall.Errno{0}, 1},
		{"jumped to", []netlink.Message{jumpFromIn}, []netlink.Message{delNamed(unix.NFT_MSG_DELCHAIN, "c")}, []syscall.Errno{syscall.EBUSY}, 0},
		{"jumped to by a rule deleted before", []netlink.Message{jumpFromIn},
			[]netlink.Message{delRule("in", 5), delNamed(unix.NFT_MSG_DELCHAIN, "c")}, []syscall.Errno{0, 0}, 1},
		{"jumped to by a rule replaced before", []netlink.Message{jumpFromIn},
			[]netlink.Message{newRule(replace, "in", "j", 5, 0), delNamed(unix.NFT_MSG_DELCHAIN, "c")}, []syscall.Errno{0, 0}, 1},
		{"missing", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELCHAIN, "e")}, []syscall.Errno{syscall.ENOENT}, 0},
		{"twice", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELCHAIN, "c"), delNamed(unix.NFT_MSG_DELCHAIN, "c")}, []syscall.Errno{0, syscall.ENOENT}, 0},
		{"NLM_F_NONREC with rules", nil, []netlink.Message{nfMsg(unix.NFT_MSG_DELCHAIN, del|unix.NLM_F_NONREC, str(unix.NFTA_CHAIN_TABLE, "t"), str(unix.NFTA_CHAIN_NAME, "in"))}, []syscall.Errno{syscall.EBUSY}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newChainKernel(t)
			mustSend(t, k, newChain(create, "in2"))
			if tc.setup != nil {
				mustSend(t, k, tc.setup...)
			}
			before := k.State.Clone()
			if errnos := send(t, k, tc.msgs...); !slices.Equal(errnos, tc.errnos) {
				t.Fatalf("errnos %v, want %v", errnos, tc.errnos)
			}
			if slices.ContainsFunc(tc.errnos, func(e syscall.Errno) bool { return e != 0 }) {
				if !reflect.DeepEqual(k.State, before) {
					t.Fatal("a failed batch changed the state")
				}
				return
			}
			if n := len(k.State.Chains) - 1; n != tc.chains { // in2 aside
				t.Fatalf("%d chains left, want %d", n, tc.chains)
			}
			for _, r := range k.State.Rules {
				if chain := nlio.StringAttr(r, attrRuleChain); find(k.State.Chains, inet, "t", named(unix.NFTA_CHAIN_NAME, chain)) < 0 {
					t.Fatalf("a rule of deleted chain %s is left", chain)
				}
			}
		})
	}
}

// newSetKernel holds set s with two elements, used by no rule, chain c,
// and ct helper h.
func newSetKernel(t *testing.T) *Kernel {
	t.Helper()
	k := &Kernel{}
	mustSend(t, k, newTable("t"), newSet(create, "s", 0), elems(unix.NFT_MSG_NEWSETELEM, create, "s", "192.0.2.1", "192.0.2.2"),
		newChain(create, "c"), newHelper(create, "h", "ftp"))
	return k
}

func TestNewSetExisting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		msg   netlink.Message
		errno syscall.Errno
	}{
		{"same declaration", newSet(create, "s", 0), 0},
		{"NLM_F_EXCL", newSet(excl, "s", 0), syscall.EEXIST},
		{"NLM_F_REPLACE", newSet(create|netlink.Replace, "s", 0), syscall.EOPNOTSUPP},
		{"other flags", newSet(create, "s", unix.NFT_SET_INTERVAL), syscall.EEXIST},
		{"other key length", nfMsg(unix.NFT_MSG_NEWSET, create, str(unix.NFTA_SET_TABLE, "t"), str(unix.NFTA_SET_NAME, "s"),
			u32a(unix.NFTA_SET_FLAGS, 0), u32a(unix.NFTA_SET_KEY_TYPE, 7), u32a(unix.NFTA_SET_KEY_LEN, 16), u32a(unix.NFTA_SET_ID, 1)), syscall.EEXIST},
		{"without an ID", nfMsg(unix.NFT_MSG_NEWSET, create, str(unix.NFTA_SET_TABLE, "t"), str(unix.NFTA_SET_NAME, "s"),
			u32a(unix.NFTA_SET_FLAGS, 0), u32a(unix.NFTA_SET_KEY_TYPE, 7), u32a(unix.NFTA_SET_KEY_LEN, 4)), syscall.EINVAL},
		{"new without NLM_F_CREATE", newSet(del, "e", 0), syscall.ENOENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newSetKernel(t)
			before := k.State.Clone()
			if errno := sendOne(t, k, tc.msg); errno != tc.errno {
				t.Fatalf("errno %v, want %v", errno, tc.errno)
			}
			if !reflect.DeepEqual(k.State, before) {
				t.Fatal("the state changed")
			}
		})
	}
}

// An existing set's timeout changes in place, as it has since Linux 6.5.
func TestSetTimeoutUpdate(t *testing.T) {
	k := &Kernel{}
	timeout := func(ms uint64) netlink.Message {
		return nfMsg(unix.NFT_MSG_NEWSET, create, str(unix.NFTA_SET_TABLE, "t"), str(unix.NFTA_SET_NAME, "d"),
			u32a(unix.NFTA_SET_FLAGS, unix.NFT_SET_TIMEOUT), u32a(unix.NFTA_SET_KEY_TYPE, 7), u32a(unix.NFTA_SET_KEY_LEN, 4), u32a(unix.NFTA_SET_ID, 1),
			u64a(unix.NFTA_SET_TIMEOUT, ms))
	}
	mustSend(t, k, newTable("t"), timeout(60000))
	mustSend(t, k, timeout(30000))
	if got := handle(k.State.Sets[0], unix.NFTA_SET_TIMEOUT); len(k.State.Sets) != 1 || got != 30000 || handle(k.State.Sets[0], nftaSetHandle) != 1 {
		t.Fatalf("%d sets, timeout %d, handle %d; want 1, 30000, 1", len(k.State.Sets), got, handle(k.State.Sets[0], nftaSetHandle))
	}
}

func TestDelSet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  []netlink.Message
		msgs   []netlink.Message
		errnos []syscall.Errno
	}{
		{"unused", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELSET, "s")}, []syscall.Errno{0}},
		{"by handle", nil, []netlink.Message{nfMsg(unix.NFT_MSG_DELSET, del, str(unix.NFTA_SET_TABLE, "t"), u64a(nftaSetHandle, 1))}, []syscall.Errno{0}},
		{"looked up", []netlink.Message{newRule(appendTo, "c", "l", 0, 0, lookup("s"))}, []netlink.Message{delNamed(unix.NFT_MSG_DELSET, "s")}, []syscall.Errno{syscall.EBUSY}},
		{"updated", []netlink.Message{newRule(appendTo, "c", "l", 0, 0, dynset("s"))}, []netlink.Message{delNamed(unix.NFT_MSG_DELSET, "s")}, []syscall.Errno{syscall.EBUSY}},
		{"looked up by a rule deleted before", []netlink.Message{newRule(appendTo, "c", "l", 0, 0, lookup("s"))},
			[]netlink.Message{delRule("c", 4), delNamed(unix.NFT_MSG_DELSET, "s")}, []syscall.Errno{0, 0}},
		{"looked up by a chain deleted before", []netlink.Message{newRule(appendTo, "c", "l", 0, 0, lookup("s"))},
			[]netlink.Message{delNamed(unix.NFT_MSG_DELCHAIN, "c"), delNamed(unix.NFT_MSG_DELSET, "s")}, []syscall.Errno{0, 0}},
		{"missing", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELSET, "e")}, []syscall.Errno{syscall.ENOENT}},
		{"NLM_F_NONREC with elements", nil, []netlink.Message{nfMsg(unix.NFT_MSG_DELSET, del|unix.NLM_F_NONREC, str(unix.NFTA_SET_TABLE, "t"), str(unix.NFTA_SET_NAME, "s"))}, []syscall.Errno{syscall.EBUSY}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newSetKernel(t)
			if tc.setup != nil {
				mustSend(t, k, tc.setup...)
			}
			before := k.State.Clone()
			if errnos := send(t, k, tc.msgs...); !slices.Equal(errnos, tc.errnos) {
				t.Fatalf("errnos %v, want %v", errnos, tc.errnos)
			}
			if tc.errnos[len(tc.errnos)-1] != 0 {
				if !reflect.DeepEqual(k.State, before) {
					t.Fatal("a failed batch changed the state")
				}
				return
			}
			if len(k.State.Sets) != 0 || len(k.State.Elems) != 0 {
				t.Fatalf("left: %d sets, %d elements", len(k.State.Sets), len(k.State.Elems))
			}
			// Gone with its elements: a new set of the name starts empty.
			mustSend(t, k, newSet(create, "s", 0))
			if got := elemStrings(t, k, "s"); len(got) != 0 {
				t.Fatalf("elements of a new set: %q", got)
			}
		})
	}
}

func TestObjects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  []netlink.Message
		msgs   []netlink.Message
		errnos []syscall.Errno
		objs   int // left after
	}{
		{"existing again", nil, []netlink.Message{newHelper(create, "h", "irc")}, []syscall.Errno{0}, 1},
		{"existing with NLM_F_EXCL", nil, []netlink.Message{newHelper(excl, "h", "ftp")}, []syscall.Errno{syscall.EEXIST}, 1},
		{"existing with NLM_F_REPLACE", nil, []netlink.Message{newHelper(create|netlink.Replace, "h", "ftp")}, []syscall.Errno{syscall.EOPNOTSUPP}, 1},
		{"another", nil, []netlink.Message{newHelper(create, "i", "ftp")}, []syscall.Errno{0}, 2},
		{"delete", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELOBJ, "h")}, []syscall.Errno{0}, 0},
		{"delete by handle", nil, []netlink.Message{nfMsg(unix.NFT_MSG_DELOBJ, del, str(unix.NFTA_OBJ_TABLE, "t"), u32a(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_CT_HELPER), u64a(nftaObjHandle, 3))}, []syscall.Errno{0}, 0},
		{"delete of another type", nil, []netlink.Message{nfMsg(unix.NFT_MSG_DELOBJ, del, str(unix.NFTA_OBJ_TABLE, "t"), str(unix.NFTA_OBJ_NAME, "h"), u32a(unix.NFTA_OBJ_TYPE, unix.NFT_OBJECT_COUNTER))}, []syscall.Errno{syscall.ENOENT}, 1},
		{"delete missing", nil, []netlink.Message{delNamed(unix.NFT_MSG_DELOBJ, "e")}, []syscall.Errno{syscall.ENOENT}, 1},
		{"delete in use", []netlink.Message{newRule(appendTo, "c", "r", 0, 0, helper("h"))}, []netlink.Message{delNamed(unix.NFT_MSG_DELOBJ, "h")}, []syscall.Errno{syscall.EBUSY}, 1},
		{"delete after its user", []netlink.Message{newRule(appendTo, "c", "r", 0, 0, helper("h"))},
			[]netlink.Message{delRule("c", 4), delNamed(unix.NFT_MSG_DELOBJ, "h")}, []syscall.Errno{0, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newSetKernel(t)
			if tc.setup != nil {
				mustSend(t, k, tc.setup...)
			}
			before := k.State.Clone()
			errnos := send(t, k, tc.msgs...)
			if !slices.Equal(errnos, tc.errnos) {
				t.Fatalf("errnos %v, want %v", errnos, tc.errnos)
			}
			if len(k.State.Objs) != tc.objs {
				t.Fatalf("%d objects, want %d", len(k.State.Objs), tc.objs)
			}
			// NEWOBJ of an existing object changes nothing, like a failure.
			if (errnos[0] != 0 || tc.name == "existing again") && !reflect.DeepEqual(k.State, before) {
				t.Fatal("the state changed")
			}
		})
	}
}

func TestElements(t *testing.T) {
	for _, tc := range []struct {
		name   string
		msgs   []netlink.Message
		errnos []syscall.Errno
		want   []string // elements of s after
	}{
		{"add, in key order", []netlink.Message{elems(unix.NFT_MSG_NEWSETELEM, create, "s", "10.0.0.9", "10.0.0.3 end", "10.0.0.3")}, []syscall.Errno{0},
			[]string{"10.0.0.3 end", "10.0.0.3", "10.0.0.9", "192.0.2.1", "192.0.2.2"}},
		{"add one held", []netlink.Message{elems(unix.NFT_MSG_NEWSETELEM, create, "s", "192.0.2.1", "192.0.2.3")}, []syscall.Errno{0},
			[]string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
		{"add one twice", []netlink.Message{elems(unix.NFT_MSG_NEWSETELEM, create, "s", "192.0.2.3", "192.0.2.3")}, []syscall.Errno{0},
			[]string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
		{"add one held with NLM_F_EXCL", []netlink.Message{elems(unix.NFT_MSG_NEWSETELEM, excl, "s", "192.0.2.3", "192.0.2.1")}, []syscall.Errno{syscall.EEXIST}, nil},
		{"add the end of a held start", []netlink.Message{elems(unix.NFT_MSG_NEWSETELEM, excl, "s", "192.0.2.1 end")}, []syscall.Errno{0},
			[]string{"192.0.2.1 end", "192.0.2.1", "192.0.2.2"}},
		{"add to a missing set", []netlink.Message{elems(unix.NFT_MSG_NEWSETELEM, create, "e", "192.0.2.3")}, []syscall.Errno{syscall.ENOENT}, nil},
		{"add a key of the wrong length", []netlink.Message{nfMsg(unix.NFT_MSG_NEWSETELEM, create, str(unix.NFTA_SET_ELEM_LIST_TABLE, "t"), str(unix.NFTA_SET_ELEM_LIST_SET, "s"),
			nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS, nest(unix.NFTA_LIST_ELEM, nest(unix.NFTA_SET_ELEM_KEY, netlink.Attribute{Type: unix.NFTA_DATA_VALUE, Data: make([]byte, 16)}))))},
			[]syscall.Errno{syscall.EINVAL}, nil},
		{"delete", []netlink.Message{elems(unix.NFT_MSG_DELSETELEM, del, "s", "192.0.2.2")}, []syscall.Errno{0}, []string{"192.0.2.1"}},
		{"delete all", []netlink.Message{elems(unix.NFT_MSG_DELSETELEM, del, "s", "192.0.2.2", "192.0.2.1")}, []syscall.Errno{0}, nil},
		{"delete and add back", []netlink.Message{elems(unix.NFT_MSG_DELSETELEM, del, "s", "192.0.2.2"), elems(unix.NFT_MSG_NEWSETELEM, excl, "s", "192.0.2.2")},
			[]syscall.Errno{0, 0}, []string{"192.0.2.1", "192.0.2.2"}},
		{"flush", []netlink.Message{nfMsg(unix.NFT_MSG_DELSETELEM, del, str(unix.NFTA_SET_ELEM_LIST_TABLE, "t"), str(unix.NFTA_SET_ELEM_LIST_SET, "s"))}, []syscall.Errno{0}, nil},
		// A missing element fails the batch: the deletion before it is undone.
		{"delete a missing one", []netlink.Message{elems(unix.NFT_MSG_DELSETELEM, del, "s", "192.0.2.1"), elems(unix.NFT_MSG_DELSETELEM, del, "s", "192.0.2.2", "192.0.2.3")},
			[]syscall.Errno{0, syscall.ENOENT}, nil},
		{"delete an end where a start is", []netlink.Message{elems(unix.NFT_MSG_DELSETELEM, del, "s", "192.0.2.1 end")}, []syscall.Errno{syscall.ENOENT}, nil},
		{"delete one twice", []netlink.Message{elems(unix.NFT_MSG_DELSETELEM, del, "s", "192.0.2.1", "192.0.2.1")}, []syscall.Errno{syscall.ENOENT}, nil},
		{"delete from a missing set", []netlink.Message{elems(unix.NFT_MSG_DELSETELEM, del, "e", "192.0.2.1")}, []syscall.Errno{syscall.ENOENT}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newSetKernel(t)
			before := k.State.Clone()
			if errnos := send(t, k, tc.msgs...); !slices.Equal(errnos, tc.errnos) {
				t.Fatalf("errnos %v, want %v", errnos, tc.errnos)
			}
			if tc.errnos[len(tc.errnos)-1] != 0 {
				if !reflect.DeepEqual(k.State, before) {
					t.Fatal("a failed batch changed the state")
				}
				return
			}
			if got := elemStrings(t, k, "s"); !slices.Equal(got, tc.want) {
				t.Fatalf("elements %q, want %q", got, tc.want)
			}
		})
	}
}

// A dump of a set's elements comes as the kernel sends it: at most
// elemsPerMessage elements a message, in key order, each nest flagged,
// the last message empty; a missing set is ENOENT.
func TestElementDump(t *testing.T) {
	k := newSetKernel(t)
	var keys []string
	for i := range 2500 {
		keys = append(keys, fmt.Sprintf("10.%d.%d.1", i/256, i%256))
	}
	slices.Reverse(keys)
	for len(keys) > 0 {
		n := min(1000, len(keys))
		mustSend(t, k, elems(unix.NFT_MSG_NEWSETELEM, create, "s", keys[:n]...))
		keys = keys[n:]
	}
	dump := func(set string) []netlink.Message {
		req := nfMsg(unix.NFT_MSG_GETSETELEM, netlink.Request|netlink.Dump, str(unix.NFTA_SET_ELEM_LIST_TABLE, "t"), str(unix.NFTA_SET_ELEM_LIST_SET, set))
		msgs, err := k.Dial([]netlink.Message{req})
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	msgs := dump("s")
	var sizes []int
	var prev []byte
	for _, m := range msgs[:len(msgs)-1] {
		if msgType(m) != unix.NFT_MSG_NEWSETELEM || m.Header.Flags&netlink.Multi == 0 {
			t.Fatalf("dump message %+v", m.Header)
		}
		n := 0
		err := eachRawAttr(m.Data[4:], func(typ uint16, list []byte) {
			if typ&^unix.NLA_F_NESTED != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				return
			}
			if typ&unix.NLA_F_NESTED == 0 {
				t.Error("NFTA_SET_ELEM_LIST_ELEMENTS without NLA_F_NESTED")
			}
			_ = eachRawAttr(list, func(typ uint16, item []byte) {
				if typ != unix.NFTA_LIST_ELEM|unix.NLA_F_NESTED {
					t.Errorf("list entry of type %#x", typ)
				}
				key := firstAttr(firstAttr(item, unix.NFTA_SET_ELEM_KEY), unix.NFTA_DATA_VALUE)
				if string(key) <= string(prev) {
					t.Errorf("key %v after %v", key, prev)
				}
				prev = key
				n++
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	if want := []int{1000, 1000, 502, 0}; !slices.Equal(sizes, want) {
		t.Errorf("elements per message %v, want %v", sizes, want)
	}
	if last := msgs[len(msgs)-1]; last.Header.Type != netlink.Done {
		t.Errorf("dump ends with %+v", last.Header)
	}
	if msgs := dump("e"); len(msgs) != 1 || msgs[0].Header.Type != netlink.Error {
		t.Fatalf("dump of a missing set: %+v", msgs)
	} else if errno, _ := nlio.Errno(msgs[0]); errno != syscall.ENOENT {
		t.Fatalf("dump of a missing set: %v", errno)
	}
}

// eachRawAttr calls f with the type, flags included, and payload of each
// attribute in b.
func eachRawAttr(b []byte, f func(typ uint16, data []byte)) error {
	attrs, err := netlink.UnmarshalAttributes(b)
	for _, a := range attrs {
		f(a.Type, a.Data)
	}
	return err
}

// Elements that google/nftables sends (numbered 1, 2, 3..., flags
// flagged as nested) are read as the kernel reads them, and what the fake
// answers, google/nftables reads back.
func TestElementsOfGoogleNftables(t *testing.T) {
	k := &Kernel{}
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "t"})
	set := &nftables.Set{Table: tbl, Name: "s", KeyType: nftables.TypeIPAddr, Interval: true}
	if err := c.AddSet(set, []nftables.SetElement{{Key: ip4("192.0.2.0")}, {Key: ip4("192.0.3.0"), IntervalEnd: true}, {Key: ip4("0.0.0.0"), IntervalEnd: true}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := elemStrings(t, k, "s"), []string{"0.0.0.0 end", "192.0.2.0", "192.0.3.0 end"}; !slices.Equal(got, want) {
		t.Fatalf("elements %q, want %q", got, want)
	}
	if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: ip4("192.0.3.0"), IntervalEnd: true}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := elemStrings(t, k, "s"), []string{"0.0.0.0 end", "192.0.2.0"}; !slices.Equal(got, want) {
		t.Fatalf("elements after a deletion %q, want %q", got, want)
	}
}

// Deleting a table deletes everything in it, and nothing of another
// table; flushing it deletes only its rules.
func TestTables(t *testing.T) {
	k := newSetKernel(t)
	mustSend(t, k, newRule(appendTo, "c", "a", 0, 0, lookup("s")), newTable("u"),
		nfMsg(unix.NFT_MSG_NEWCHAIN, create, str(unix.NFTA_CHAIN_TABLE, "u"), str(unix.NFTA_CHAIN_NAME, "c")))
	k.FlushTable("t")
	if s := k.State; len(s.Rules) != 0 || len(s.Chains) != 2 || len(s.Sets) != 1 || len(s.Elems) != 2 || len(s.Objs) != 1 {
		t.Fatalf("after FlushTable: %d rules, %d chains, %d sets, %d elements, %d objects", len(s.Rules), len(s.Chains), len(s.Sets), len(s.Elems), len(s.Objs))
	}
	if k.Gen != 3 {
		t.Errorf("generation %d after 2 batches and a flush, want 3", k.Gen)
	}
	if errno := sendOne(t, k, newTable("t")); errno != 0 {
		t.Fatalf("existing table again: %v", errno)
	}
	if errno := sendOne(t, k, nfMsg(unix.NFT_MSG_NEWTABLE, excl, str(unix.NFTA_TABLE_NAME, "t"))); errno != syscall.EEXIST {
		t.Fatalf("existing table with NLM_F_EXCL: %v", errno)
	}
	mustSend(t, k, nfMsg(unix.NFT_MSG_DELTABLE, del, str(unix.NFTA_TABLE_NAME, "t")))
	if s := k.State; len(s.Tables) != 1 || len(s.Chains) != 1 || len(s.Sets)+len(s.Elems)+len(s.Objs)+len(s.Rules) != 0 {
		t.Fatalf("after DELTABLE: %+v", s)
	}
	if got := k.TableNames(inet); !slices.Equal(got, []string{"u"}) {
		t.Errorf("tables %q", got)
	}
	if errno := sendOne(t, k, nfMsg(unix.NFT_MSG_DELTABLE, del, str(unix.NFTA_TABLE_NAME, "t"))); errno != syscall.ENOENT {
		t.Fatalf("missing table deleted: %v", errno)
	}
	// nft flush ruleset: a DELTABLE without family or name.
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	c.FlushRuleset()
	if err := c.Flush(); err != nil || len(k.State.Tables)+len(k.State.Chains) != 0 {
		t.Fatalf("flush ruleset: %v; %d tables, %d chains left", err, len(k.State.Tables), len(k.State.Chains))
	}
}

// A clone shares nothing that a batch changes: changes to it, in place
// or not, leave the original as it was.
func TestClone(t *testing.T) {
	k := newSetKernel(t)
	mustSend(t, k, newRule(appendTo, "c", "a", 0, 0))
	s := k.State
	c := s.Clone()
	if !reflect.DeepEqual(c, s) {
		t.Fatal("a clone differs from the original")
	}
	if errno := c.apply(elems(unix.NFT_MSG_NEWSETELEM, create, "s", "10.0.0.1")); errno != 0 {
		t.Fatal(errno)
	}
	c.Tables[0].LastHandle = 99
	c.Tables[0].Msg.Data[4] = 0xff
	c.Rules[0].Data[4] = 0xff
	c.Elems[0].Key = "x"
	if reflect.DeepEqual(c, s) || !reflect.DeepEqual(s, k.State) || s.Tables[0].LastHandle == 99 || s.Elems[0].Key == "x" || len(s.Elems) != 2 {
		t.Fatal("changing a clone changed the original")
	}
	if s.Tables[0].Msg.Data[4] == 0xff || s.Rules[0].Data[4] == 0xff {
		t.Fatal("a clone shares message bytes with the original")
	}
	var empty State
	if !reflect.DeepEqual(empty.Clone(), empty) {
		t.Fatal("the clone of an empty state is not empty")
	}
}

// The injected failures work as they did.
func TestInjectedFailures(t *testing.T) {
	newChainType := uint16(unix.NFT_MSG_NEWCHAIN)
	k := &Kernel{FailOn: &newChainType, FailErr: syscall.EPERM, FailText: "no"}
	if errnos := send(t, k, newTable("t"), newChain(create, "c"), newChain(create, "d")); !slices.Equal(errnos, []syscall.Errno{0, syscall.EPERM, 0}) {
		t.Fatalf("FailOn: %v", errnos)
	}
	if len(k.State.Tables) != 0 || k.Batches != 0 || k.Writes != 3 || k.Gen != 0 {
		t.Fatalf("after a failed batch: %d tables, %d batches, %d writes, generation %d", len(k.State.Tables), k.Batches, k.Writes, k.Gen)
	}
	k = &Kernel{CommitErr: syscall.ENOMEM}
	if _, err := k.Dial([]netlink.Message{{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN}, Data: make([]byte, 4)}, newTable("t"), {Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END}, Data: make([]byte, 4)}}); err != nil || len(k.State.Tables) != 0 {
		t.Fatalf("CommitErr: %v, %d tables", err, len(k.State.Tables))
	}
	k = &Kernel{}
	mustSend(t, k, newTable("t"))
	k.MidRead = func() { mustSend(t, k, newChain(create, "c")) }
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChains()
	if err != nil || len(chains) != 1 || k.Gets[unix.NFT_MSG_GETCHAIN] != 1 || k.Gen != 2 {
		t.Fatalf("MidRead: %d chains, %v, %d reads, generation %d", len(chains), err, k.Gets[unix.NFT_MSG_GETCHAIN], k.Gen)
	}
}
