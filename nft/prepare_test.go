package nft

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
)

// BenchmarkPrepare is ftpnft install's own work before the kernel gets the
// batch: read and parse the allowlist, build the ruleset, fingerprint it
// and encode the batch. The kernel's share is BenchmarkKernel's (tag
// netns); scripts/bench compares the whole command with nft -f.
func BenchmarkPrepare(b *testing.B) {
	for _, n := range []int{0, 10000} {
		var s strings.Builder
		for _, p := range benchSources(n) {
			s.WriteString(p.String() + "\n")
		}
		path := filepath.Join(b.TempDir(), "sources.txt")
		if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("sources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cfg := DefaultConfig()
				if n > 0 {
					var err error
					if cfg.Sources, err = ReadSourceFile(path); err != nil {
						b.Fatal(err)
					}
				}
				rs, err := Build(cfg)
				if err != nil {
					b.Fatal(err)
				}
				fp := rs.fingerprint()
				bt, err := newBatch()
				if err != nil {
					b.Fatal(err)
				}
				if err := bt.add(tableMessage(rs.Table, stamp(fp, 1))); err != nil {
					b.Fatal(err)
				}
				if err := enqueue(bt, rs, &nftables.Table{Family: nftables.TableFamilyINet, Name: rs.Table}); err != nil {
					b.Fatal(err)
				}
				if _, err := bt.messages(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchSources returns n IPv4 networks that no two merge: every other /24
// from 10.0.0.0, as an allowlist of n entries.
func benchSources(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 7), byte(i << 1), 0}), 24)
	}
	return out
}

// BenchmarkShapes measures what status spends recognising the statements
// of the default table's rules read back from the kernel.
func BenchmarkShapes(b *testing.B) {
	rs, err := Build(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	var rules []*nftables.Rule
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			rules = append(rules, &nftables.Rule{Exprs: r.exprs()})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range rules {
			shapeOf(r)
		}
	}
}
