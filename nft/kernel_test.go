//go:build netns

package nft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/ftpnft/ftpnft/integration"
)

// TestKernelRefusesStaleGeneration shows, against the real kernel, what
// Apply's and Remove's race guard rests on: a batch begun at a generation
// that another commit has since moved past is refused whole, and the same
// batch begun at the current generation is applied.
func TestKernelRefusesStaleGeneration(t *testing.T) {
	h := integration.NewHost(t, "gen")
	c, release, err := connect(context.Background(), []Option{WithNetNS(h.Path)})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	addTable := func(gen uint32) *batch {
		b, err := newBatch()
		if err != nil {
			t.Fatal(err)
		}
		b.gen = gen
		b.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "ftpnft"})
		return b
	}

	stale, err := c.generation()
	if err != nil {
		t.Fatal(err)
	}
	h.MustExec(t, "nft", "add", "table", "inet", "someone_else")
	if err := c.commit("install", "ftpnft", addTable(stale)); !errors.Is(err, errChanged) {
		t.Fatalf("batch at a stale generation: %v, want it refused", err)
	}
	if out := h.MustExec(t, "nft", "list", "tables"); strings.Contains(out, "ftpnft") {
		t.Fatalf("a refused batch changed the ruleset:\n%s", out)
	}

	current, err := c.generation()
	if err != nil {
		t.Fatal(err)
	}
	if current == stale {
		t.Fatalf("generation %d unchanged after another commit", current)
	}
	if err := c.commit("install", "ftpnft", addTable(current)); err != nil {
		t.Fatalf("batch at the current generation: %v", err)
	}
	if out := h.MustExec(t, "nft", "list", "tables"); !strings.Contains(out, "table inet ftpnft") {
		t.Fatalf("batch at the current generation not applied:\n%s", out)
	}
}

// The library against the kernel, in a namespace: a fresh install, a
// re-install that finds nothing to change, and a status read, with the
// default configuration and with a 10,000-network allowlist.
// scripts/bench compares the command with nft -f; these show the library's
// own share.
func BenchmarkKernel(b *testing.B) {
	h := integration.NewHost(b, "bench")
	opt := WithNetNS(h.Path)
	for _, n := range []int{0, 10000} {
		cfg := DefaultConfig()
		cfg.Sources = benchSources(n)
		rs, err := Build(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("install/sources=%d", n), func(b *testing.B) {
			for b.Loop() {
				if res, err := Apply(context.Background(), rs, opt); err != nil || !res.Changed {
					b.Fatalf("Apply = %+v, %v", res, err)
				}
				b.StopTimer()
				if _, err := Remove(context.Background(), rs.Table, opt); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
		if _, err := Apply(context.Background(), rs, opt); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("reinstall/sources=%d", n), func(b *testing.B) {
			for b.Loop() {
				if res, err := Apply(context.Background(), rs, opt); err != nil || res.Changed {
					b.Fatalf("Apply = %+v, %v; want nothing to change", res, err)
				}
			}
		})
		b.Run(fmt.Sprintf("status/sources=%d", n), func(b *testing.B) {
			for b.Loop() {
				if st, err := ReadStatus(context.Background(), rs, opt); err != nil || !st.Matches {
					b.Fatalf("ReadStatus = %+v, %v", st, err)
				}
			}
		})
		if _, err := Remove(context.Background(), rs.Table, opt); err != nil {
			b.Fatal(err)
		}
	}
}
