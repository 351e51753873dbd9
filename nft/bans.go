package nft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/ftpnft/ftpnft/internal/input"
)

// Bans are run-time state of ftpnft's table: the networks in its sets
// ftp-ban4 and ftp-ban6 (interval sets whose elements carry timeouts of
// their own) are dropped before anything else in every policy chain.
// Install keeps them whatever it changes; the kernel forgets a ban when
// its time is up.

// ErrNotInstalled reports that ftpnft's table, which bans live in, is not
// installed.
var ErrNotInstalled = errors.New("ftpnft's table is not installed (run ftpnft install first)")

// A Ban is a network whose packets ftpnft's chains drop before anything
// else.
type Ban struct {
	Net AddrRange
	// Left is how long the ban still lasts; 0 for one without end.
	Left time.Duration
}

// MarshalJSON writes {"net": "192.0.2.0/24", "seconds_left": 3600}, 0 for
// a ban without end.
func (b Ban) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Net         AddrRange `json:"net"`
		SecondsLeft int64     `json:"seconds_left"`
	}{b.Net, int64((b.Left + time.Second - 1) / time.Second)})
}

// BanNet returns the network a ban of p applies to: p itself, or for an
// IPv4-mapped IPv6 prefix (::ffff:192.0.2.7, what a server listening on
// IPv6 logs for an IPv4 client) the IPv4 one.
func BanNet(p netip.Prefix) (netip.Prefix, error) {
	if !p.Addr().Is4In6() {
		return p.Masked(), nil
	}
	if p.Bits() < 96 {
		return netip.Prefix{}, fmt.Errorf("ban %s: an IPv4-mapped prefix needs at least 96 bits", input.Quote(p.String()))
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked(), nil
}

// ReadBans returns the bans of ftpnft's table, IPv4 then IPv6, each in
// address order.
func ReadBans(ctx context.Context, table string, opts ...Option) ([]Ban, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	var bans []Ban
	err = c.bansTransaction("bans", table, func(b *banBatch) bool {
		bans = append(slices.Clone(b.got[false]), b.got[true]...)
		return false
	})
	return bans, err
}

// AddBans bans nets for d (0: until unbanned), in one batch: their packets
// are dropped before anything else in ftpnft's chains. Banning a network
// that overlaps bans there are makes one ban of them all that lasts as
// long as the longest: banning what is banned extends it. The error wraps
// ErrNotInstalled when there is no table to ban in.
func AddBans(ctx context.Context, table string, nets []netip.Prefix, d time.Duration, opts ...Option) error {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return err
	}
	defer release()
	return c.bansTransaction("ban", table, func(b *banBatch) bool {
		for _, v6 := range families {
			var ranges []AddrRange
			for _, p := range nets {
				if p.Addr().Is6() == v6 {
					ranges = append(ranges, AddrRange{p.Masked().Addr(), lastAddr(p)})
				}
			}
			if len(ranges) > 0 {
				b.ban(v6, ranges, d)
			}
		}
		return true
	})
}

// RemoveBans lifts the bans of nets and reports how many bans it changed;
// a network that is not banned is not an error. A ban of a larger network
// keeps the rest of it, for the rest of its time.
func RemoveBans(ctx context.Context, table string, nets []netip.Prefix, opts ...Option) (int, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return 0, err
	}
	defer release()
	n := 0
	err = c.bansTransaction("unban", table, func(b *banBatch) bool {
		n = 0
		for _, p := range nets {
			n += b.unban(p)
		}
		return n > 0
	})
	return n, err
}

// banBatch is one round of a ban transaction: the bans read, and the
// elements to delete and add, by family (true: IPv6).
type banBatch struct {
	got      map[bool][]Ban
	del, add map[bool][]element
}

// ban bans ranges of one family (v6) for d. With the bans there are, in
// address order, each run of overlapping ranges that holds a new one
// becomes one ban of their union, for the longest of their times (0,
// without end, is the longest): banning what is banned extends it. One
// pass, however many ranges a command bans.
func (b *banBatch) ban(v6 bool, ranges []AddrRange, d time.Duration) {
	type item struct {
		r    AddrRange
		left time.Duration
		old  bool
	}
	items := make([]item, 0, len(b.got[v6])+len(ranges))
	for _, x := range b.got[v6] {
		items = append(items, item{x.Net, x.Left, true})
	}
	for _, r := range ranges {
		items = append(items, item{r, d, false})
	}
	slices.SortFunc(items, func(a, c item) int { return a.r.From.Compare(c.r.From) })
	var keep []Ban
	for i := 0; i < len(items); {
		u, left, fresh := items[i].r, items[i].left, !items[i].old
		j := i + 1
		for ; j < len(items) && !u.To.Less(items[j].r.From); j++ {
			u.To = maxAddr(u.To, items[j].r.To)
			left = longer(left, items[j].left)
			fresh = fresh || !items[j].old
		}
		if fresh {
			for _, it := range items[i:j] {
				if it.old {
					b.del[v6] = append(b.del[v6], banElements(it.r, 0)...)
				}
			}
			b.add[v6] = append(b.add[v6], banElements(u, left)...)
		}
		keep = append(keep, Ban{Net: u, Left: left})
		i = j
	}
	b.got[v6] = keep
}

// longer is the longer of two ban times, where 0 is without end.
func longer(a, b time.Duration) time.Duration {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}

// unban takes p out of the bans that overlap it and reports how many did.
func (b *banBatch) unban(p netip.Prefix) int {
	v6 := p.Addr().Is6()
	r := AddrRange{p.Masked().Addr(), lastAddr(p)}
	n := 0
	var keep []Ban
	for _, x := range b.got[v6] {
		if x.Net.To.Less(r.From) || r.To.Less(x.Net.From) {
			keep = append(keep, x)
			continue
		}
		n++
		b.del[v6] = append(b.del[v6], banElements(x.Net, 0)...)
		// What is left of x on either side of p stays banned.
		for _, rest := range []AddrRange{{x.Net.From, r.From.Prev()}, {r.To.Next(), x.Net.To}} {
			if rest.From.IsValid() && rest.To.IsValid() && !rest.To.Less(rest.From) &&
				!rest.From.Less(x.Net.From) && !x.Net.To.Less(rest.To) {
				keep = append(keep, Ban{Net: rest, Left: x.Left})
				b.add[v6] = append(b.add[v6], banElements(rest, x.Left)...)
			}
		}
	}
	b.got[v6] = keep
	return n
}

// banElements are a ban's start and end elements, its timeout on the
// start (the kernel refuses one on an interval end; when the start
// expires, the end goes with it).
func banElements(r AddrRange, d time.Duration) []element {
	els := rangeElements([]AddrRange{r})
	els[0].Timeout = d
	return els
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}

// bansOf decodes the elements of a ban set: each range with the time its
// start element has left.
func bansOf(els []element) []Ban {
	var out []Ban
	eachRange(els, func(start element, r AddrRange) { out = append(out, Ban{Net: r, Left: start.Expires}) })
	return out
}

// bansTransaction reads the bans of table and lets change plan elements to
// delete and add, then sends them in one batch at the generation it read
// (reading again when another writer got in between). It reads nothing
// else of the table: a ban costs the same beside a million-network
// blocklist. When the table's stamp held, the batch writes it again at
// the new generation: bans are not part of the ruleset it digests.
func (c *conn) bansTransaction(op, table string, change func(b *banBatch) (send bool)) error {
	return c.retry(op, table, func() error { return c.bansAttempt(op, table, change) })
}

func (c *conn) bansAttempt(op, table string, change func(b *banBatch) bool) error {
	gen, err := c.generation()
	if err != nil {
		return err
	}
	st, found, err := c.stampOf(table)
	if err != nil {
		return err
	}
	if !found {
		return &Error{Op: op, Table: table, Err: ErrNotInstalled}
	}
	if !st.ok {
		return &Error{Op: op, Table: table, Err: ErrNotOwned}
	}
	b := &banBatch{got: map[bool][]Ban{}, del: map[bool][]element{}, add: map[bool][]element{}}
	for _, v6 := range families {
		els, err := c.setElements(table, setName(setBan, v6))
		if err != nil {
			return &Error{Op: op, Table: table, Err: fmt.Errorf("read the bans (set %s; an older ftpnft's table: run install): %w", setName(setBan, v6), classify(err))}
		}
		b.got[v6] = bansOf(els)
	}
	if !change(b) {
		return c.unchanged(gen)
	}
	nb, err := newBatch()
	if err != nil {
		return &Error{Op: op, Table: table, Err: err}
	}
	nb.gen = gen
	for _, v6 := range families {
		set := setName(setBan, v6)
		if err := addElements(nb, elementsDelete, table, set, b.del[v6]); err != nil {
			return &Error{Op: op, Table: table, Err: err}
		}
		if err := addElements(nb, elementsAdd, table, set, b.add[v6]); err != nil {
			return &Error{Op: op, Table: table, Err: err}
		}
	}
	if st.handle != 0 && st.gen == gen {
		next := stampRuleData(stamp(st.fp, nextGeneration(gen)))
		tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
		nb.ReplaceRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: stampChain, Table: tbl},
			Handle: st.handle, Exprs: []expr.Any{}, UserData: next})
		nb.applied = func(c *conn) (bool, error) {
			udata, _, err := c.stampRuleOf(table)
			return bytes.Equal(udata, next), err
		}
	}
	return c.commit(op, table, nb)
}

// RestoreBans adds bans read earlier (ReadBans) back to the table, each for
// the time it has left (0: without end), merged with the bans there are as
// AddBans merges them: what a daemon does after another program deleted
// the table with its bans (nft flush ruleset).
func RestoreBans(ctx context.Context, table string, bans []Ban, opts ...Option) error {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return err
	}
	defer release()
	return c.bansTransaction("restore bans", table, func(b *banBatch) bool {
		for _, x := range bans {
			b.ban(x.Net.From.Is6(), []AddrRange{x.Net}, x.Left)
		}
		return len(bans) > 0
	})
}
