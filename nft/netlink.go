package nft

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/ftpnft/ftpnft/internal/nlio"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

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

// conn is a connection to nf_tables in one namespace.
type conn struct {
	*nftables.Conn
	netnsFd int // 0 for the current namespace
	dial    nltest.Func
}

// connect returns a netlink connection to nf_tables and a function that
// releases what connect opened.
func connect(opts []Option) (*conn, func(), error) {
	o := options{netnsFd: -1}
	for _, opt := range opts {
		opt(&o)
	}
	var copts []nftables.ConnOption
	release := func() {}
	cn := &conn{dial: o.dial}
	switch {
	case o.dial != nil:
		copts = append(copts, nftables.WithTestDial(o.dial))
	case o.netnsSet:
		f, err := nlio.OpenNetNS(o.netnsPath)
		if err != nil {
			return nil, nil, &Error{Op: "open netns", Err: err}
		}
		copts = append(copts, nftables.WithNetNSFd(int(f.Fd())))
		cn.netnsFd = int(f.Fd())
		release = func() { f.Close() }
	case o.netnsFd >= 0:
		copts = append(copts, nftables.WithNetNSFd(o.netnsFd))
		cn.netnsFd = o.netnsFd
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
	return cn, func() { c.CloseLasting(); release() }, nil
}

// Generation returns the ruleset's generation ID (NFT_MSG_GETGEN), which the
// kernel increments with every committed batch in the namespace: two equal
// readings mean that nothing was changed in between, by ftpnft or anyone
// else.
func Generation(opts ...Option) (uint32, error) {
	c, release, err := connect(opts)
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
			if id := bytesAttr(m, unix.NFTA_GEN_ID); len(id) == 4 {
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

// Result says what Apply did.
type Result struct {
	// Changed is false when the kernel already held the desired ruleset
	// and nothing was sent.
	Changed bool
	// Replaced is true when an earlier ftpnft table was replaced.
	Replaced bool
	// Repaired is true when the table replaced had been changed since
	// ftpnft wrote it (by hand, or by another program): flushed, rules
	// added or deleted.
	Repaired bool
}

// Apply makes the kernel hold rs, as one atomic netlink batch: when the table
// exists and was made by ftpnft it is deleted and created anew in the same
// batch, so a failure anywhere leaves the kernel as it was. When the kernel
// already holds exactly rs, Apply sends nothing. A table of ftpnft's that
// was changed by hand is replaced the same way ([Result.Repaired]). A table
// of the same name that ftpnft did not create is never touched: the error
// wraps [ErrNotOwned].
func Apply(rs *Ruleset, opts ...Option) (Result, error) {
	c, release, err := connect(opts)
	if err != nil {
		return Result{}, err
	}
	defer release()
	fp := rs.fingerprint()
	if ok, err := c.stamped(rs.Table, fp); err != nil || ok {
		return Result{}, err
	}
	var res Result
	err = c.transact("install", rs.Table, func(cur *installed, b *batch) (bool, error) {
		res = Result{} // a view from an earlier attempt no longer counts
		if cur != nil && cur.fingerprint == fp {
			return false, nil
		}
		table := &nftables.Table{Family: nftables.TableFamilyINet, Name: rs.Table}
		if cur != nil {
			b.DelTable(table)
		}
		st := stamp(fp, nextGeneration(b.gen))
		if err := b.add(tableMessage(rs.Table, st)); err != nil {
			return false, err
		}
		// Only this batch can have left this stamp: it names the
		// generation the batch's commit leads to.
		b.applied = func(c *conn) (bool, error) {
			udata, found, err := c.table(rs.Table)
			return found && bytes.Equal(udata, st), err
		}
		res = Result{Changed: true, Replaced: cur != nil, Repaired: cur != nil && cur.modified()}
		return true, enqueue(b, rs, table)
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// maxAttempts bounds how often a transaction reads the ruleset again after
// another writer changed it.
const maxAttempts = 5

// errChanged is commit's signal that another writer got in between.
var errChanged = errors.New("ruleset changed")

// transact reads table at the ruleset's current generation, lets plan queue
// the changes on a batch (or decide that none are needed), and commits the
// batch only if the ruleset is still at that generation. When another writer
// committed in between, the kernel refuses the whole batch and transact reads
// again; after maxAttempts it gives up with ErrConcurrent. A table that
// ftpnft did not create is never planned for.
func (c *conn) transact(op, table string, plan func(cur *installed, b *batch) (send bool, err error)) error {
	for attempt := 1; ; attempt++ {
		err := c.attempt(op, table, plan)
		if !errors.Is(err, errChanged) {
			return err
		}
		if attempt == maxAttempts {
			return &Error{Op: op, Table: table, Err: ErrConcurrent}
		}
	}
}

// attempt is one round of transact. A decision taken without a batch (the
// table is foreign, nothing needs sending, or reading failed) is only
// trusted when the generation did not move during the read: a table
// deleted halfway through the read would otherwise look foreign or absent.
func (c *conn) attempt(op, table string, plan func(cur *installed, b *batch) (bool, error)) error {
	gen, err := c.generation()
	if err != nil {
		return err
	}
	unchanged := func() error {
		if now, err := c.generation(); err != nil {
			return err
		} else if now != gen {
			return errChanged
		}
		return nil
	}
	cur, err := read(c, table)
	if err != nil {
		return cmp.Or(unchanged(), err)
	}
	if cur != nil && !cur.Owned {
		return cmp.Or(unchanged(), error(&Error{Op: op, Table: table, Err: ErrNotOwned}))
	}
	b, err := newBatch()
	if err != nil {
		return &Error{Op: op, Table: table, Err: err}
	}
	b.gen = gen
	send, err := plan(cur, b)
	if err != nil {
		return &Error{Op: op, Table: table, Err: err}
	}
	if !send {
		return unchanged()
	}
	return c.commit(op, table, b)
}

// enqueue adds the messages that fill table with rs to c's batch: its
// objects and sets, every chain (so that jumps find their target), then the
// rules.
func enqueue(c *batch, rs *Ruleset, table *nftables.Table) error {
	for _, h := range rs.Helpers {
		c.AddObj(&nftables.NamedObj{
			Table: table,
			Name:  h.Name,
			Type:  nftables.ObjTypeCtHelper,
			Obj: &expr.CtHelper{
				Name:    h.Type,
				L3Proto: unix.NFPROTO_INET,
				L4Proto: protoNumbers[h.Protocol],
			},
		})
	}
	for _, s := range rs.Sets {
		if err := addSet(c, table, s); err != nil {
			return err
		}
	}
	chains := make([]*nftables.Chain, len(rs.Chains))
	for i, ch := range rs.Chains {
		chain := &nftables.Chain{Name: ch.Name, Table: table}
		if ch.Hook != "" {
			chain.Type = nftables.ChainType(ch.Type)
			chain.Hooknum = nftables.ChainHookRef(hookNumbers[ch.Hook])
			chain.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority))
			chain.Policy = policyRef(ch.Policy)
		}
		chains[i] = c.AddChain(chain)
	}
	for i, ch := range rs.Chains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: chains[i], Exprs: r.Exprs(), UserData: r.UserData()})
		}
	}
	return nil
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
		HasTimeout: s.Timeout > 0,
		Timeout:    s.Timeout,
		Size:       s.Size,
	}
	if s.V6 {
		set.KeyType = nftables.TypeIP6Addr
	}
	if err := b.AddSet(set, nil); err != nil {
		return err
	}
	els := s.elements()
	for len(els) > 0 {
		n := min(setChunk, len(els))
		if err := b.add(elementsMessage(table.Name, s.Name, els[:n])); err != nil {
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

// Remove deletes ftpnft's table and everything in it. Removing a table that
// does not exist succeeds with removed false. A table of that name that
// ftpnft did not create is left alone and the error wraps [ErrNotOwned].
func Remove(table string, opts ...Option) (removed bool, err error) {
	c, release, err := connect(opts)
	if err != nil {
		return false, err
	}
	defer release()
	err = c.transact("uninstall", table, func(cur *installed, b *batch) (bool, error) {
		removed = cur != nil
		if cur != nil {
			b.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: table})
			b.applied = func(c *conn) (bool, error) {
				_, found, err := c.table(table)
				return !found, err
			}
		}
		return removed, nil
	})
	if err != nil {
		return false, err
	}
	return removed, nil
}

// installed is a table as read back from the kernel.
type installed struct {
	// Owned reports that ftpnft created the table: its user data holds
	// ftpnft's stamp (or, for a table from before the stamp, every rule
	// carries ftpnft's comment). Of a table that is not owned nothing more
	// is read.
	Owned       bool
	Helpers     []Helper
	Sets        []Set
	Chains      []installedChain
	fingerprint fingerprint
	// stamp is the fingerprint of the ruleset ftpnft created the table
	// from, when the table has a stamp.
	stamp    fingerprint
	hasStamp bool
}

// modified reports whether the table was changed since ftpnft wrote it:
// by hand (nft flush table, a rule added) or by another program.
func (in *installed) modified() bool { return in.hasStamp && in.stamp != in.fingerprint }

type installedChain struct {
	Chain
	rules []*nftables.Rule
}

// read returns the table named name in family inet, or nil if there is none.
func read(c *conn, name string) (*installed, error) {
	udata, found, err := c.table(name)
	if err != nil || !found {
		return nil, err
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	in := &installed{}
	_, in.stamp, in.hasStamp = parseStamp(udata)

	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, &Error{Op: "list chains", Table: name, Err: classify(err)}
	}
	rulesSeen, ownedRules := 0, 0
	for _, ch := range chains {
		if ch.Table.Name != name {
			continue
		}
		ic := installedChain{Chain: chainOf(ch)}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return nil, &Error{Op: "list rules", Table: name, Err: classify(err)}
		}
		ic.rules = rules
		for _, r := range rules {
			rulesSeen++
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			if strings.HasPrefix(comment, commentPrefix) {
				ownedRules++
			}
			ic.Rules = append(ic.Rules, Rule{Comment: strings.TrimPrefix(comment, commentPrefix)})
		}
		in.Chains = append(in.Chains, ic)
	}
	in.Owned = in.hasStamp || rulesSeen > 0 && ownedRules == rulesSeen
	if !in.Owned {
		return &installed{}, nil
	}

	objs, err := c.GetNamedObjects(table)
	if err != nil {
		return nil, &Error{Op: "list objects", Table: name, Err: classify(err)}
	}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok {
			continue
		}
		h := Helper{Name: no.Name, Type: fmt.Sprintf("object type %d", no.Type)}
		if ct, ok := no.Obj.(*expr.CtHelper); ok && no.Type == nftables.ObjTypeCtHelper {
			h = Helper{Name: no.Name, Type: ct.Name, Protocol: protoName(ct.L4Proto)}
			if ct.L3Proto != unix.NFPROTO_INET {
				h.Protocol += fmt.Sprintf(" l3proto %d", ct.L3Proto)
			}
		}
		in.Helpers = append(in.Helpers, h)
	}

	sets, err := c.GetSets(table)
	if err != nil {
		return nil, &Error{Op: "list sets", Table: name, Err: classify(err)}
	}
	for _, st := range sets {
		if st.Anonymous {
			continue // part of a rule, which the fingerprint holds
		}
		s := Set{Name: st.Name, V6: st.KeyType.Name == nftables.TypeIP6Addr.Name, Interval: st.Interval,
			Dynamic: st.Dynamic, Size: st.Size}
		if st.HasTimeout {
			s.Timeout = st.Timeout
		}
		switch st.KeyType.Name {
		case nftables.TypeIPAddr.Name, nftables.TypeIP6Addr.Name:
		default:
			// Not a set of ftpnft's: its elements are not addresses.
			s.otherKey = st.KeyType.Name
		}
		if st.Interval && s.otherKey == "" {
			els, err := c.setElements(name, st.Name)
			if err != nil {
				return nil, &Error{Op: "list set elements", Table: name, Err: classify(err)}
			}
			s.Ranges = rangesOf(els)
		}
		in.Sets = append(in.Sets, s)
	}

	in.fingerprint = fingerprintOf(in.Helpers, in.Sets, in.Chains, installedRules)
	return in, nil
}

// chainOf describes a chain read back from the kernel.
func chainOf(ch *nftables.Chain) Chain {
	c := Chain{Name: ch.Name, Type: string(ch.Type)}
	if ch.Hooknum != nil {
		for n, h := range hookNumbers {
			if h == *ch.Hooknum {
				c.Hook = n
			}
		}
		if c.Hook == "" {
			c.Hook = fmt.Sprintf("hook %d", *ch.Hooknum)
		}
	}
	if ch.Priority != nil {
		c.Priority = int32(*ch.Priority)
	}
	if ch.Policy != nil {
		c.Policy = PolicyAccept
		if *ch.Policy == nftables.ChainPolicyDrop {
			c.Policy = PolicyDrop
		}
	}
	return c
}

func protoName(n uint8) string {
	for name, v := range protoNumbers {
		if v == n {
			return name
		}
	}
	return fmt.Sprintf("protocol %d", n)
}

type ruleFP struct {
	exprs  []expr.Any
	udata  []byte
	handle uint64 // of a rule read back from the kernel
}

// comment returns the rule's comment and whether it is one of ftpnft's,
// without ftpnft's prefix.
func (r ruleFP) comment() (string, bool) {
	c, _ := userdata.GetString(r.udata, userdata.TypeComment)
	c = strings.TrimRight(c, "\x00")
	return strings.TrimPrefix(c, commentPrefix), strings.HasPrefix(c, commentPrefix)
}

// key encodes the rule canonically: its netlink expressions with counter
// values cleared, and its user data. Two rules are the same rule when
// their keys are equal.
func (r ruleFP) key() string {
	var b bytes.Buffer
	for _, e := range r.exprs {
		m, err := expr.Marshal(byte(nftables.TableFamilyINet), canonical(e))
		if err != nil {
			m = fmt.Appendf(nil, "unencodable %T", e)
		}
		b.Write(m)
	}
	return hex.EncodeToString(b.Bytes()) + " " + hex.EncodeToString(r.udata)
}

// fingerprint describes rs as the kernel would report it, so that a table
// read back can be compared with it.
func (rs *Ruleset) fingerprint() fingerprint {
	chains := make([]installedChain, len(rs.Chains))
	for i, c := range rs.Chains {
		chains[i] = installedChain{Chain: c}
	}
	return fingerprintOf(rs.Helpers, rs.Sets, chains, desiredRules)
}

// installedRules are the rules of a chain read back from the kernel.
func installedRules(ic installedChain) []ruleFP {
	fps := make([]ruleFP, len(ic.rules))
	for i, r := range ic.rules {
		fps[i] = ruleFP{exprs: r.Exprs, udata: r.UserData, handle: r.Handle}
	}
	return fps
}

// desiredRules are the rules of a chain of a Ruleset.
func desiredRules(ic installedChain) []ruleFP {
	fps := make([]ruleFP, len(ic.Chain.Rules))
	for i, r := range ic.Chain.Rules {
		fps[i] = ruleFP{exprs: r.Exprs(), udata: r.UserData()}
	}
	return fps
}

// A fingerprint is the SHA-256 of the lines that describe a table
// canonically, joined by newlines (fingerprintOf). Hashing the lines one by
// one spares joining them: a 10,000-range set's line is 320 KB.
type fingerprint [sha256.Size]byte

// fingerprintOf encodes helpers, chains and rules canonically: rules as their
// netlink encoding with counter values cleared, chains sorted by name.
func fingerprintOf(helpers []Helper, sets []Set, chains []installedChain, rules func(installedChain) []ruleFP) fingerprint {
	var lines [][]byte
	for _, h := range helpers {
		lines = append(lines, fmt.Appendf(nil, "helper %s %s %s", h.Name, h.Type, h.Protocol))
	}
	for _, s := range sets {
		lines = append(lines, s.fingerprint())
	}
	slices.SortFunc(lines, bytes.Compare)
	sorted := slices.Clone(chains)
	slices.SortFunc(sorted, func(a, b installedChain) int { return strings.Compare(a.Name, b.Name) })
	for _, ch := range sorted {
		lines = append(lines, fmt.Appendf(nil, "chain %s %s %s %d %s", ch.Name, ch.Type, ch.Hook, ch.Priority, ch.Policy))
		for _, r := range rules(ch) {
			lines = append(lines, []byte("rule "+r.key()))
		}
	}
	h := sha256.New()
	for i, l := range lines {
		if i > 0 {
			h.Write([]byte{'\n'})
		}
		h.Write(l)
	}
	return fingerprint(h.Sum(nil))
}

// canonical returns e as ftpnft would send it: counters without their
// values, and NAT ranges without the maximum registers that the kernel
// reports as equal to the minimum ones when none were sent.
func canonical(e expr.Any) expr.Any {
	switch e := e.(type) {
	case *expr.Counter:
		return &expr.Counter{}
	case *expr.Lookup:
		l := *e
		l.SetID = 0 // the kernel reports the set by name only
		return &l
	case *expr.Dynset:
		d := *e
		d.SetID = 0
		return &d
	case *expr.NAT:
		n := *e
		if n.RegAddrMax == n.RegAddrMin {
			n.RegAddrMax = 0
		}
		if n.RegProtoMax == n.RegProtoMin {
			n.RegProtoMax = 0
		}
		return &n
	}
	return e
}

// shape is what status needs to know of a rule read back from the kernel:
// the matches and actions of the statements ftpnft writes, decoded from
// their expressions.
type shape struct {
	dport      uint16     // tcp/udp dport match
	daddr      netip.Addr // ip/ip6 daddr match
	oifname    string     // oifname match
	ctNew      bool       // ct state new
	ctRelated  bool       // ct state related
	ctHelper   bool       // ct helper "NAME" (a match, not an assignment)
	dportRange PortRange  // tcp/udp dport LO-HI
	connlimit  uint32     // add @set { ... ct count over N }
	rate       Rate       // update @set { ... limit rate over N/unit }
	assigns    bool       // ct helper set
	accept     bool       // verdict accept, or jump to the control checks
	dnat       netip.AddrPort
	masquerade bool
}

// shapeOf decodes r's expressions into a shape. Matches count only as
// equality tests, as ftpnft writes them.
func shapeOf(r *nftables.Rule) shape {
	var sh shape
	regs := map[uint32][]byte{} // immediate values loaded into registers
	for i, e := range r.Exprs {
		var eq []byte // the value the next expression compares for equality
		if i+1 < len(r.Exprs) {
			if cmp, ok := r.Exprs[i+1].(*expr.Cmp); ok && cmp.Op == expr.CmpOpEq {
				eq = cmp.Data
			}
		}
		switch e := e.(type) {
		case *expr.Payload:
			switch {
			case e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 && e.Len == 2 && len(eq) == 2:
				sh.dport = binary.BigEndian.Uint16(eq)
			case *e == *addrPayload(false, dst) && len(eq) == 4, *e == *addrPayload(true, dst) && len(eq) == 16:
				sh.daddr, _ = netip.AddrFromSlice(eq)
			}
		case *expr.Meta:
			if e.Key == expr.MetaKeyOIFNAME && eq != nil {
				sh.oifname = string(bytes.TrimRight(eq, "\x00"))
			}
		case *expr.Bitwise:
			if ct, ok := r.Exprs[max(i-1, 0)].(*expr.Ct); ok && ct.Key == expr.CtKeySTATE {
				sh.ctNew = sh.ctNew || bytes.Equal(e.Mask, binary.NativeEndian.AppendUint32(nil, stateNew))
				sh.ctRelated = sh.ctRelated || bytes.Equal(e.Mask, binary.NativeEndian.AppendUint32(nil, stateRelated))
			}
		case *expr.Cmp:
			// A port range: payload, then cmp gte and cmp lte.
			if e.Op == expr.CmpOpGte && len(e.Data) == 2 && i+1 < len(r.Exprs) {
				if hi, ok := r.Exprs[i+1].(*expr.Cmp); ok && hi.Op == expr.CmpOpLte && len(hi.Data) == 2 {
					sh.dportRange = PortRange{binary.BigEndian.Uint16(e.Data), binary.BigEndian.Uint16(hi.Data)}
				}
			}
		case *expr.Dynset:
			for _, x := range e.Exprs {
				switch x := x.(type) {
				case *expr.Connlimit:
					sh.connlimit = x.Count
				case *expr.Limit:
					sh.rate = Rate{N: x.Rate, Unit: "second"}
					if x.Unit == expr.LimitTimeMinute {
						sh.rate.Unit = "minute"
					}
				}
			}
		case *expr.Ct:
			sh.ctHelper = sh.ctHelper || e.Key == expr.CtKeyHELPER && eq != nil
		case *expr.Objref:
			sh.assigns = sh.assigns || e.Type == int(unix.NFT_OBJECT_CT_HELPER)
		case *expr.Verdict:
			// A jump to the control checks ends in accept too.
			sh.accept = e.Kind == expr.VerdictAccept || e.Kind == expr.VerdictJump && e.Chain == controlChain
		case *expr.Immediate:
			regs[e.Register] = e.Data
		case *expr.NAT:
			addr, ok := netip.AddrFromSlice(regs[e.RegAddrMin])
			port := regs[e.RegProtoMin]
			if ok && e.Type == expr.NATTypeDestNAT && len(port) == 2 {
				sh.dnat = netip.AddrPortFrom(addr, binary.BigEndian.Uint16(port))
			}
		case *expr.Masq:
			sh.masquerade = true
		}
	}
	return sh
}
