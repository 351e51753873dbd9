package nfttest_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/ftpnft/ftpnft/nft"
	"github.com/ftpnft/ftpnft/nft/nfttest"
)

func build(t *testing.T, ports ...uint16) *nft.Ruleset {
	t.Helper()
	cfg := nft.DefaultConfig()
	if len(ports) > 0 {
		cfg.Ports = ports
	}
	rs, err := nft.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// A transaction that the fake rejects changes nothing, and says which
// message was rejected.
func TestFailedTransactionChangesNothing(t *testing.T) {
	ctx := t.Context()
	fake := nfttest.New()
	if _, err := nft.Apply(ctx, build(t), fake.Option()); err != nil {
		t.Fatal(err)
	}
	before := fake.Dump()
	// A change of port: one rule deleted in each chain, one added.
	for _, kind := range []string{nfttest.AddRule, nfttest.DeleteRule} {
		if err := fake.Fail(kind, syscall.EINVAL); err != nil {
			t.Fatal(err)
		}
		_, err := nft.Apply(ctx, build(t, 2121), fake.Option())
		if !errors.Is(err, syscall.EINVAL) || fake.Dump() != before || fake.Commits() != 1 {
			t.Fatalf("%s rejected: %v; commits %d; dump changed: %v", kind, err, fake.Commits(), fake.Dump() != before)
		}
	}
	fake.Fail("", 0)
	if _, err := nft.Apply(ctx, build(t, 2121), fake.Option()); err != nil || !strings.Contains(fake.Dump(), "tcp dport 2121") {
		t.Fatalf("after failures stop: %v\n%s", err, fake.Dump())
	}
	if err := fake.Fail("add frobnicator", syscall.EINVAL); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

// Another writer between nft's read and its batch: the batch is refused
// and nft reads again; the generation counts both commits.
func TestOtherWriter(t *testing.T) {
	fake := nfttest.New()
	fake.OtherWriter()
	if _, err := nft.Apply(t.Context(), build(t), fake.Option()); err != nil {
		t.Fatal(err)
	}
	if fake.Commits() != 1 || fake.Generation() != 3 {
		t.Fatalf("commits %d, generation %d; want 1 and 3", fake.Commits(), fake.Generation())
	}
}

// A flushed table shows as chains without rules, and nft repairs it.
func TestFlushTable(t *testing.T) {
	ctx := context.Background()
	fake := nfttest.New()
	rs := build(t)
	if _, err := nft.Apply(ctx, rs, fake.Option()); err != nil {
		t.Fatal(err)
	}
	fake.FlushTable(nft.DefaultTable)
	if d := fake.Dump(); strings.Contains(d, "comment") || !strings.Contains(d, "policy drop") {
		t.Fatalf("flushed table:\n%s", d)
	}
	res, err := nft.Apply(ctx, rs, fake.Option())
	if err != nil || !res.Repaired {
		t.Fatalf("repair = %+v, %v", res, err)
	}
	if removed, err := nft.Remove(ctx, nft.DefaultTable, fake.Option()); err != nil || !removed || fake.Dump() != "" {
		t.Fatalf("remove = %v, %v; left %q", removed, err, fake.Dump())
	}
}
