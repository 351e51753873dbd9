package nft

import (
	"fmt"
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
		for i := range n {
			fmt.Fprintf(&s, "10.%d.%d.0/24\n", i>>7&255, i<<1&255)
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
