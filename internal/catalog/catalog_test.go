package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stretchr/testify/require"
)

const (
	validMachine = "version: 1\nevents: []\nstates:\n  INIT: {terminal: true}\n"
	// otherMachine differs from validMachine in size too, so a change is
	// seen even on a file system with coarse modification times.
	otherMachine   = "version: 1.0\nevents: [GO]\nstates:\n  INIT:\n    terminal: true\n    on: {GO: [{action: no-op}]}\n"
	invalidMachine = "version: 1\nevents: []\nstates:\n  START: {terminal: true}\n"
)

// clock is a hand-moved time source for the catalog's intervals.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type dirBundle struct {
	dir     string
	clock   *clock
	catalog *Catalog
}

func setupDir(t *testing.T, files map[string]string) *dirBundle {
	t.Helper()
	b := &dirBundle{dir: t.TempDir(), clock: &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}
	for name, content := range files {
		b.write(t, name, content)
	}
	b.catalog = NewDir(b.dir, Options{Now: b.clock.Now})
	return b
}

// write writes a file and moves its modification time forward, as an edit
// a while later would.
func (b *dirBundle) write(t *testing.T, name, content string) {
	t.Helper()
	path := filepath.Join(b.dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	var mtime time.Time
	if info, err := os.Stat(path); err == nil {
		mtime = info.ModTime().Add(time.Second)
	} else {
		mtime = time.Now()
	}
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	require.NoError(t, os.Chtimes(path, mtime, mtime))
}

// get is the machine name, which must load.
func (b *dirBundle) get(t *testing.T, name string) *machine.Machine {
	t.Helper()
	m, err := b.catalog.Get(t.Context(), name)
	require.NoError(t, err)
	return m
}

func TestDirCatalogGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{
		"a.yml":       validMachine,
		"b.yaml":      invalidMachine,
		"notes.txt":   "not a machine",
		"sub/c.yml":   validMachine,
		".hidden.yml": validMachine,
	})

	m := b.get(t, "a")
	require.Equal(t, "a", m.Name)
	require.Equal(t, filepath.Join(b.dir, "a.yml"), m.Source)
	require.Equal(t, Stats{Lists: 1, Reads: 2}, b.catalog.Stats())

	// Loaded once: more calls neither list nor read.
	for range 10 {
		again := b.get(t, "a")
		require.Same(t, m, again)
	}
	require.Equal(t, Stats{Lists: 1, Reads: 2}, b.catalog.Stats())

	_, err := b.catalog.Get(ctx, "b")
	require.ErrorIs(t, err, ErrInvalidMachine)
	require.NotErrorIs(t, err, ErrUnknownMachine)
	require.ErrorContains(t, err, filepath.Join(b.dir, "b.yaml")+":3:1: there is no INIT state; every stack starts in INIT [missing-init]")
	var verr *machine.ValidationError
	require.ErrorAs(t, err, &verr)
	require.Equal(t, machine.RuleMissingInit, verr.Problems[0].Rule)

	for _, name := range []string{"c", "sub", ".hidden", "hidden", "notes"} {
		_, err = b.catalog.Get(ctx, name)
		require.ErrorIs(t, err, ErrUnknownMachine, name)
		require.NotErrorIs(t, err, ErrInvalidMachine, name)
	}

	names, err := b.catalog.Names(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, names)
}

func TestDirCatalogRefreshesOnlyChangedFiles(t *testing.T) {
	t.Parallel()
	b := setupDir(t, map[string]string{"a.yml": validMachine, "b.yml": validMachine})

	before := b.get(t, "a")
	require.Equal(t, "1", before.Version)
	require.Equal(t, Stats{Lists: 1, Reads: 2}, b.catalog.Stats())

	b.write(t, "a.yml", otherMachine)

	// Within the refresh interval the catalog does not look.
	b.clock.Add(29 * time.Second)
	m := b.get(t, "a")
	require.Same(t, before, m)
	require.Equal(t, Stats{Lists: 1, Reads: 2}, b.catalog.Stats())

	// After it, it lists again and reads only the changed file.
	b.clock.Add(time.Second)
	m = b.get(t, "a")
	require.Equal(t, "1.0", m.Version)
	require.Equal(t, []string{"GO"}, m.Events)
	require.Equal(t, Stats{Lists: 2, Reads: 3}, b.catalog.Stats())

	// Nothing changed: the next listing reads nothing.
	b.clock.Add(30 * time.Second)
	unchanged := b.get(t, "b")
	require.Equal(t, Stats{Lists: 3, Reads: 3}, b.catalog.Stats())
	b.clock.Add(30 * time.Second)
	again := b.get(t, "b")
	require.Same(t, unchanged, again)
	require.Equal(t, Stats{Lists: 4, Reads: 3}, b.catalog.Stats())
}

func TestDirCatalogValidityFollowsTheFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{"a.yml": validMachine})
	b.get(t, "a")

	// A broken upload is never used, even though a good version was loaded.
	b.write(t, "a.yml", invalidMachine)
	b.clock.Add(30 * time.Second)
	_, err := b.catalog.Get(ctx, "a")
	require.ErrorIs(t, err, ErrInvalidMachine)
	require.ErrorContains(t, err, "[missing-init]")

	b.write(t, "a.yml", otherMachine)
	b.clock.Add(30 * time.Second)
	m := b.get(t, "a")
	require.Equal(t, "1.0", m.Version)

	require.NoError(t, os.Remove(filepath.Join(b.dir, "a.yml")))
	b.clock.Add(30 * time.Second)
	_, err = b.catalog.Get(ctx, "a")
	require.ErrorIs(t, err, ErrUnknownMachine)
}

func TestDirCatalogUnknownNameForcesARateLimitedListing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{"a.yml": validMachine})
	_, err := b.catalog.Get(ctx, "new")
	require.ErrorIs(t, err, ErrUnknownMachine)
	require.Equal(t, int64(1), b.catalog.Stats().Lists, "the first listing is also the forced one")

	b.write(t, "new.yml", validMachine)
	// Less than MissInterval since the last listing: no new listing.
	b.clock.Add(500 * time.Millisecond)
	for range 5 {
		_, err = b.catalog.Get(ctx, "new")
		require.ErrorIs(t, err, ErrUnknownMachine)
	}
	require.Equal(t, int64(1), b.catalog.Stats().Lists)

	// A second later, a miss lists again, long before RefreshInterval.
	b.clock.Add(500 * time.Millisecond)
	m := b.get(t, "new")
	require.Equal(t, "new", m.Name)
	require.Equal(t, Stats{Lists: 2, Reads: 2}, b.catalog.Stats())

	// Known names never force a listing.
	b.clock.Add(5 * time.Second)
	b.get(t, "a")
	require.Equal(t, int64(2), b.catalog.Stats().Lists)
}

func TestDirCatalogDuplicateNames(t *testing.T) {
	t.Parallel()
	b := setupDir(t, map[string]string{"a.yml": validMachine, "a.yaml": validMachine})
	_, err := b.catalog.Get(context.Background(), "a")
	require.ErrorIs(t, err, ErrInvalidMachine)
	require.ErrorContains(t, err, "defined twice")
	require.ErrorContains(t, err, filepath.Join(b.dir, "a.yaml"))
	require.ErrorContains(t, err, filepath.Join(b.dir, "a.yml"))
}

func TestDirCatalogSourceErrorsAreTransient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{"a.yml": validMachine})
	b.get(t, "a")

	// The folder disappears: what was loaded keeps working, anything else
	// is a transient error rather than "unknown".
	moved := b.dir + "-moved"
	require.NoError(t, os.Rename(b.dir, moved))
	t.Cleanup(func() { _ = os.RemoveAll(moved) })
	b.clock.Add(30 * time.Second)
	m := b.get(t, "a")
	require.Equal(t, "a", m.Name)
	_, err := b.catalog.Get(ctx, "b")
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrUnknownMachine)
	require.NotErrorIs(t, err, ErrInvalidMachine)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "error listing machines in "+b.dir)

	// Once it is back, the next attempt (MissInterval later) succeeds.
	require.NoError(t, os.Rename(moved, b.dir))
	require.NoError(t, os.WriteFile(filepath.Join(b.dir, "b.yml"), []byte(validMachine), 0o600))
	b.clock.Add(time.Second)
	b.get(t, "b")
}

func TestDirCatalogMissingFolder(t *testing.T) {
	t.Parallel()
	c := NewDir(filepath.Join(t.TempDir(), "nope"), Options{})
	_, err := c.Get(context.Background(), "a")
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NotErrorIs(t, err, ErrUnknownMachine)
	require.Error(t, c.Refresh(context.Background()))
}

func TestDirCatalogConcurrentGets(t *testing.T) {
	t.Parallel()
	files := map[string]string{}
	for i := range 20 {
		files[fmt.Sprintf("m%d.yml", i)] = validMachine
	}
	b := setupDir(t, files)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 200 {
		wg.Go(func() {
			name := fmt.Sprintf("m%d", g%20)
			if g%7 == 0 {
				b.clock.Add(10 * time.Second) // refreshes race with reads
			}
			m, err := b.catalog.Get(context.Background(), name)
			if err == nil && m.Name != name {
				err = fmt.Errorf("got %s for %s", m.Name, name)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Files never changed, so each was read exactly once however many
	// listings the clock caused.
	require.Equal(t, int64(20), b.catalog.Stats().Reads)
}

func TestCatalogRefreshIgnoresIntervals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{"a.yml": validMachine})
	require.NoError(t, b.catalog.Refresh(ctx))
	require.NoError(t, b.catalog.Refresh(ctx))
	require.Equal(t, Stats{Lists: 2, Reads: 1}, b.catalog.Stats())
	b.get(t, "a")
	require.Equal(t, int64(2), b.catalog.Stats().Lists, "Get uses the listing Refresh made")
}

// TestRefreshIfDueListsWhenNamesWould: RefreshIfDue lists the source exactly when Names would
// (the first time, then once the refresh interval passed), and a machine added meanwhile is then
// known.
func TestRefreshIfDueListsWhenNamesWould(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{"a.yml": validMachine})

	require.NoError(t, b.catalog.RefreshIfDue(ctx))
	require.Equal(t, Stats{Lists: 1, Reads: 1}, b.catalog.Stats())

	b.write(t, "b.yml", validMachine)
	b.clock.Add(29 * time.Second)
	require.NoError(t, b.catalog.RefreshIfDue(ctx))
	require.Equal(t, Stats{Lists: 1, Reads: 1}, b.catalog.Stats())

	b.clock.Add(time.Second)
	require.NoError(t, b.catalog.RefreshIfDue(ctx))
	require.Equal(t, Stats{Lists: 2, Reads: 2}, b.catalog.Stats())
	names, err := b.catalog.Names(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, names)
	require.Equal(t, Stats{Lists: 2, Reads: 2}, b.catalog.Stats())
}

func TestCatalogGetHonoursContextWhileWaiting(t *testing.T) {
	t.Parallel()
	b := setupDir(t, map[string]string{"a.yml": validMachine})
	b.catalog.sem <- struct{}{} // a refresh that never ends
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := b.catalog.Get(ctx, "a")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// fakeSource serves machine files from memory and fails reads on demand.
type fakeSource struct {
	mu       sync.Mutex
	files    map[string]string // name → content
	versions map[string]int
	failRead map[string]bool
}

func (f *fakeSource) String() string { return "fake" }

func (f *fakeSource) set(name, content string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[name] = content
	f.versions[name]++
}

func (f *fakeSource) list(context.Context) ([]object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []object
	for name := range f.files {
		out = append(out, object{name: name, key: name, location: "fake/" + name + ".yml", version: fmt.Sprint(f.versions[name])})
	}
	return out, nil
}

func (f *fakeSource) read(_ context.Context, o object) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRead[o.name] {
		return nil, "", errors.New("connection reset")
	}
	return []byte(f.files[o.name]), "", nil
}

func TestCatalogReadErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := &fakeSource{files: map[string]string{}, versions: map[string]int{}, failRead: map[string]bool{}}
	src.set("a", validMachine)
	src.set("b", validMachine)
	clk := &clock{now: time.Unix(0, 0)}
	c := newCatalog(src, Options{Now: clk.Now})

	src.failRead["b"] = true
	_, err := c.Get(ctx, "a")
	require.NoError(t, err, "one unreadable file does not hide the others")
	_, err = c.Get(ctx, "b")
	require.ErrorContains(t, err, "connection reset")
	require.NotErrorIs(t, err, ErrUnknownMachine)
	require.NotErrorIs(t, err, ErrInvalidMachine)

	// A failed read is retried after MissInterval, not RefreshInterval.
	src.failRead["b"] = false
	clk.Add(time.Second)
	_, err = c.Get(ctx, "b")
	require.NoError(t, err)

	// A changed file that cannot be read: the loaded machine stays in use
	// and the read is retried soon.
	a, err := c.Get(ctx, "a")
	require.NoError(t, err)
	src.set("a", otherMachine)
	src.failRead["a"] = true
	clk.Add(30 * time.Second)
	m, err := c.Get(ctx, "a")
	require.NoError(t, err)
	require.Same(t, a, m)
	src.failRead["a"] = false
	clk.Add(time.Second)
	m, err = c.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "1.0", m.Version)
}

func TestCatalogRejectsHugeFiles(t *testing.T) {
	t.Parallel()
	src := &fakeSource{files: map[string]string{}, versions: map[string]int{}, failRead: map[string]bool{}}
	src.set("big", validMachine+"# "+string(make([]byte, machine.MaxFileSize)))
	c := newCatalog(src, Options{})
	_, err := c.Get(context.Background(), "big")
	require.ErrorIs(t, err, ErrInvalidMachine)
	require.ErrorContains(t, err, "larger than")
}

func TestCatalogKeepsTheLastValidVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupDir(t, map[string]string{"a.yml": validMachine})
	first := b.get(t, "a")
	require.Len(t, first.Hash, 64)
	require.Equal(t, validMachine, string(first.Body))

	// Broken, then deleted: Get and Loaded say so, Version still has the valid one.
	b.write(t, "a.yml", invalidMachine)
	b.clock.Add(time.Minute)
	_, err := b.catalog.Get(ctx, "a")
	require.ErrorIs(t, err, ErrInvalidMachine)
	_, err = b.catalog.Loaded("a")
	require.ErrorIs(t, err, ErrInvalidMachine)
	require.Same(t, first, b.catalog.Version(first.Hash))

	require.NoError(t, os.Remove(filepath.Join(b.dir, "a.yml")))
	b.clock.Add(time.Minute)
	_, err = b.catalog.Get(ctx, "a")
	require.ErrorIs(t, err, ErrUnknownMachine)
	require.Same(t, first, b.catalog.Version(first.Hash))
}

func TestCatalogLoadedNeverReadsTheSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := &fakeSource{files: map[string]string{}, versions: map[string]int{}}
	src.set("a", validMachine)
	c := newCatalog(src, Options{})
	_, err := c.Loaded("a")
	require.ErrorIs(t, err, ErrUnknownMachine, "nothing loaded yet, and Loaded does not load")
	require.Zero(t, c.Stats().Lists)

	_, err = c.Get(ctx, "a")
	require.NoError(t, err)
	src.set("a", otherMachine)
	m, err := c.Loaded("a")
	require.NoError(t, err)
	require.Equal(t, validMachine, string(m.Body), "the parsed snapshot, not the changed source")
	require.Equal(t, Stats{Lists: 1, Reads: 1}, c.Stats())
}

func TestCatalogRememberParsesStoredVersions(t *testing.T) {
	t.Parallel()
	c := newCatalog(&fakeSource{files: map[string]string{}, versions: map[string]int{}}, Options{})
	m, err := c.Remember("gone", []byte(otherMachine))
	require.NoError(t, err)
	require.Equal(t, "gone", m.Name)
	require.Same(t, m, c.Version(m.Hash))
	again, err := c.Remember("gone", []byte(otherMachine))
	require.NoError(t, err)
	require.Same(t, m, again, "parsed once")

	_, err = c.Remember("bad", []byte(invalidMachine))
	require.ErrorIs(t, err, ErrInvalidMachine)
}

// slowSource blocks its listing while held is open.
type slowSource struct {
	*fakeSource
	held chan struct{}
}

func (s *slowSource) list(ctx context.Context) ([]object, error) {
	if s.held != nil {
		<-s.held
	}
	return s.fakeSource.list(ctx)
}

func TestCatalogGetDoesNotWaitForARefreshInProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	src := &slowSource{fakeSource: &fakeSource{files: map[string]string{}, versions: map[string]int{}}}
	src.set("a", validMachine)
	c := newCatalog(src, Options{Now: clk.Now})
	first, err := c.Get(ctx, "a")
	require.NoError(t, err)

	// The listing is due; one Get starts it and is held inside it.
	clk.Add(time.Minute)
	src.held = make(chan struct{})
	refreshing := make(chan struct{})
	go func() {
		defer close(refreshing)
		_, _ = c.Get(ctx, "a")
	}()
	require.Eventually(t, func() bool { return c.Stats().Lists == 2 }, 10*time.Second, time.Millisecond)

	// Another Get is answered from what is loaded, without waiting.
	m, err := c.Get(ctx, "a")
	require.NoError(t, err)
	require.Same(t, first, m)
	close(src.held)
	<-refreshing
}

func TestParseFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := []byte("version: 1\nevents: []\nstates: {INIT: {terminal: true}}\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yaml"), data, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.json"), data, 0o600))

	m, err := ParseFile(filepath.Join(dir, "a.yaml"))
	require.NoError(t, err)
	require.Equal(t, "a", m.Name)

	_, err = ParseFile(filepath.Join(dir, "b.json"))
	require.ErrorContains(t, err, ".yml or .yaml")

	_, err = ParseFile(filepath.Join(dir, "missing.yml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	var verr *machine.ValidationError
	require.False(t, errors.As(err, &verr), "a read error is not a validation error")
}
