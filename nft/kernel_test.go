//go:build netns

package nft

import (
	"errors"
	"strings"
	"testing"

	"github.com/ftpnft/ftpnft/integration"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

// TestKernelRefusesStaleGeneration shows, against the real kernel, what
// Apply's and Remove's race guard rests on: a batch begun at a generation
// that another commit has since moved past is refused whole, and the same
// batch begun at the current generation is applied.
func TestKernelRefusesStaleGeneration(t *testing.T) {
	h := integration.NewHost(t, "gen")
	c, release, err := connect([]Option{WithNetNS(h.Path)})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	addTable := func() []netlink.Message {
		b, err := newBatch()
		if err != nil {
			t.Fatal(err)
		}
		b.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "ftpnft"})
		msgs, err := b.messages()
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}

	stale, err := c.generation()
	if err != nil {
		t.Fatal(err)
	}
	h.MustExec(t, "nft", "add", "table", "inet", "someone_else")
	if err := c.commit("install", "ftpnft", addTable(), stale); !errors.Is(err, errChanged) {
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
	if err := c.commit("install", "ftpnft", addTable(), current); err != nil {
		t.Fatalf("batch at the current generation: %v", err)
	}
	if out := h.MustExec(t, "nft", "list", "tables"); !strings.Contains(out, "table inet ftpnft") {
		t.Fatalf("batch at the current generation not applied:\n%s", out)
	}
}
