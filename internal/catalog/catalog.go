// Package catalog loads machines: it reads machine files from a folder or an S3 prefix, parses
// them with package machine and keeps them, with the earlier versions stacks still run on, for a
// long-running process. Package machine stays the pure format (no I/O, no AWS SDK), so the engine
// that decides on a machine imports neither.
package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/machine"
)

// ErrUnknownMachine is wrapped by Catalog.Get when no file defines the
// machine. It is permanent: retrying the same event will not help.
var ErrUnknownMachine = errors.New("unknown machine")

// ErrInvalidMachine is wrapped by Catalog.Get when the machine's file breaks
// the rules; the error text holds every problem. It is permanent until the
// file is fixed.
var ErrInvalidMachine = errors.New("invalid machine")

// Options configures a Catalog. The zero value is ready to use.
type Options struct {
	// RefreshInterval is how long the catalog trusts its last listing of the
	// source before listing it again on the next Get. Only files whose ETag
	// (S3) or modification time and size (folder) changed are read again.
	// Defaults to 30s.
	RefreshInterval time.Duration
	// MissInterval is the least time between two listings forced by Get
	// asking for a name the catalog does not know (so a machine uploaded a
	// moment ago works at once), and the wait before retrying a listing or
	// read that failed. Defaults to 1s.
	MissInterval time.Duration
	// Now returns the current time; tests replace it. Defaults to time.Now.
	Now func() time.Time
	// Kinds are the executors a machine's tasks may name. Defaults to kinds.All.
	Kinds machine.Kinds
}

// Stats counts the catalog's work since it was made.
type Stats struct {
	// Lists is how many times the source was listed.
	Lists int64
	// Reads is how many machine files were read (downloaded).
	Reads int64
}

// Catalog gives a long-running process (a Lambda container, a local worker)
// its machines by name. It lists its source once, keeps the parsed machines,
// and re-lists at most every RefreshInterval, re-reading only files that
// changed. It is safe for concurrent use.
type Catalog struct {
	src  source
	opts Options

	// sem lets one goroutine refresh at a time; the others wait for its
	// result instead of listing the source again. A channel rather than a
	// mutex so waiting respects the context.
	sem chan struct{}

	mu          sync.RWMutex
	entries     map[string]*entry
	nextRefresh time.Time // when the listing is stale
	attemptedAt time.Time // when the last listing started
	lastErr     error     // why the last listing failed, if it did

	// versions holds every valid version parsed, by hash: the current ones
	// and earlier ones stacks still run on (see Version, Remember).
	versions map[string]*machine.Machine

	lists, reads atomic.Int64
}

// maxVersions bounds the parsed versions a catalog keeps besides the
// current ones; past it the others are dropped and parsed again when needed.
const maxVersions = 256

// entry is what the catalog knows about one machine name.
type entry struct {
	location string
	// version identifies the file contents read (ETag or mtime+size); empty
	// means "read it again at the next refresh".
	version string
	// machine is set when the file is valid, or when a re-read failed
	// transiently and the previous valid machine is kept.
	machine *machine.Machine
	// err is set when machine is nil: ErrInvalidMachine, or a transient
	// read error.
	err error
}

// object is one machine file found by listing a source.
type object struct {
	name     string
	key      string // what the source needs to read it
	location string // what problems and errors print
	version  string
}

// source is where a catalog finds machine files.
type source interface {
	list(ctx context.Context) ([]object, error)
	// read returns the file's contents and, if the source can tell, the
	// version actually read (else "").
	read(ctx context.Context, o object) ([]byte, string, error)
	String() string
}

func newCatalog(src source, opts Options) *Catalog {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 30 * time.Second
	}
	if opts.MissInterval <= 0 {
		opts.MissInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Kinds == nil {
		opts.Kinds = kinds.All
	}
	return &Catalog{src: src, opts: opts, sem: make(chan struct{}, 1), entries: map[string]*entry{}, versions: map[string]*machine.Machine{}}
}

// Get returns the machine called name.
//
// Errors wrapping ErrUnknownMachine or ErrInvalidMachine are permanent.
// Any other error is transient (the source could not be listed or read) and
// worth retrying. When a refresh fails but the machine was loaded before,
// the loaded machine is returned: a short S3 outage does not stop stacks.
func (c *Catalog) Get(ctx context.Context, name string) (*machine.Machine, error) {
	refreshErr := c.refreshIfDue(ctx, false)
	e := c.lookup(name)
	if e == nil && refreshErr == nil {
		// Perhaps uploaded since the last listing; rate-limited so a
		// stream of events for a bogus machine does not hammer the source.
		refreshErr = c.refreshIfDue(ctx, true)
		e = c.lookup(name)
	}
	switch {
	case e != nil && e.machine != nil:
		return e.machine, nil
	case e != nil:
		return nil, e.err
	case refreshErr != nil:
		return nil, fmt.Errorf("error loading machine %s: %w", name, refreshErr)
	default:
		return nil, fmt.Errorf("machine %s is not in %s: %w", name, c.src, ErrUnknownMachine)
	}
}

// Loaded returns the machine called name as the catalog holds it now. It
// never lists, reads or parses, so it is what code holding a lock calls (the
// store's apply transaction); Get, called before taking the lock, keeps
// the catalog fresh. A name the catalog holds nothing for gives an error
// wrapping ErrUnknownMachine.
func (c *Catalog) Loaded(name string) (*machine.Machine, error) {
	e := c.lookup(name)
	switch {
	case e != nil && e.machine != nil:
		return e.machine, nil
	case e != nil:
		return nil, e.err
	default:
		return nil, fmt.Errorf("machine %s is not in %s: %w", name, c.src, ErrUnknownMachine)
	}
}

// Version returns the valid version of a machine whose Hash is hash, if the
// catalog has parsed it: from the source, now or before (so the last valid
// version of a file since broken or deleted is still here), or through
// Remember. Like Loaded, it never parses.
func (c *Catalog) Version(hash string) *machine.Machine {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.versions[hash]
}

// Remember parses a stored version of machine name (body as it was read
// from its file) and keeps it for Version. It is how a process that never
// saw the file valid (a cold start after the file broke) gets the version a
// stack runs on back from the database. Call it outside any lock.
func (c *Catalog) Remember(name string, body []byte) (*machine.Machine, error) {
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if m := c.Version(hash); m != nil && m.Name == name {
		return m, nil
	}
	if len(body) > machine.MaxFileSize {
		return nil, fmt.Errorf("stored machine %s@%s: %w: larger than %d bytes", name, hash[:12], ErrInvalidMachine, machine.MaxFileSize)
	}
	m, err := machine.Parse(name, "stored:"+name+"@"+hash[:12], body, c.opts.Kinds)
	if err != nil {
		return nil, fmt.Errorf("stored machine %s@%s: %w:\n%w", name, hash[:12], ErrInvalidMachine, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keepVersion(m)
	return m, nil
}

// keepVersion adds m to versions; the caller holds mu.
func (c *Catalog) keepVersion(m *machine.Machine) {
	if len(c.versions) >= maxVersions {
		current := map[string]bool{}
		for _, e := range c.entries {
			if e.machine != nil {
				current[e.machine.Hash] = true
			}
		}
		for h := range c.versions {
			if !current[h] {
				delete(c.versions, h)
			}
		}
	}
	c.versions[m.Hash] = m
}

// Names returns the names of every machine file in the source, valid or not,
// sorted.
func (c *Catalog) Names(ctx context.Context) ([]string, error) {
	if err := c.refreshIfDue(ctx, false); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Sorted(maps.Keys(c.entries)), nil
}

// RefreshIfDue lists the source when Names would (its interval passed) and returns the error Names
// would, without building the list of names: the state manager calls it for every event that
// names no machine.
func (c *Catalog) RefreshIfDue(ctx context.Context) error { return c.refreshIfDue(ctx, false) }

// Refresh lists the source now, whatever the intervals say, and re-reads the
// files that changed. A process may call it at start so the first event does
// not wait for S3.
func (c *Catalog) Refresh(ctx context.Context) error {
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	return c.refresh(ctx)
}

// Stats reports how often the source was listed and files were read.
func (c *Catalog) Stats() Stats {
	return Stats{Lists: c.lists.Load(), Reads: c.reads.Load()}
}

func (c *Catalog) lookup(name string) *entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.entries[name]
}

func (c *Catalog) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("error waiting for the machine catalog to refresh: %w", ctx.Err())
	}
}

func (c *Catalog) release() { <-c.sem }

// refreshIfDue refreshes when the listing is stale, or (forced) when the last
// listing is older than MissInterval. It returns the error of the listing
// that now stands, so a failed listing stays visible until one succeeds.
func (c *Catalog) refreshIfDue(ctx context.Context, forced bool) error {
	due := func() (bool, error) {
		c.mu.RLock()
		defer c.mu.RUnlock()
		now := c.opts.Now()
		if forced {
			return now.Sub(c.attemptedAt) >= c.opts.MissInterval, c.lastErr
		}
		return !now.Before(c.nextRefresh), c.lastErr
	}
	if ok, err := due(); !ok {
		return err
	}
	select {
	case c.sem <- struct{}{}:
	default:
		// Another goroutine is refreshing (listing, reading, parsing). A
		// catalog that has loaded before serves what it has rather than wait
		// for it; only a first load, or a name it has never seen, waits.
		c.mu.RLock()
		loaded, err := !c.nextRefresh.IsZero(), c.lastErr
		c.mu.RUnlock()
		if loaded && !forced {
			return err
		}
		if err := c.acquire(ctx); err != nil {
			return err
		}
	}
	defer c.release()
	// Another goroutine may have refreshed while this one waited.
	if ok, err := due(); !ok {
		return err
	}
	return c.refresh(ctx)
}

// refresh lists the source and re-reads what changed. The caller holds sem.
func (c *Catalog) refresh(ctx context.Context) error {
	start := c.opts.Now()
	c.mu.Lock()
	c.attemptedAt = start
	c.mu.Unlock()

	c.lists.Add(1)
	objs, err := c.src.list(ctx)
	if err != nil {
		err = fmt.Errorf("error listing machines in %s: %w", c.src, err)
		c.mu.Lock()
		c.lastErr = err
		c.nextRefresh = start.Add(c.opts.MissInterval)
		c.mu.Unlock()
		return err
	}

	c.mu.RLock()
	old := c.entries
	c.mu.RUnlock()

	byName := map[string][]object{}
	for _, o := range objs {
		byName[o.name] = append(byName[o.name], o)
	}
	next := make(map[string]*entry, len(byName))
	var toRead []object
	for name, found := range byName {
		if len(found) > 1 {
			sort.Slice(found, func(i, j int) bool { return found[i].location < found[j].location })
			next[name] = &entry{
				location: found[0].location,
				err: fmt.Errorf("machine %s: %w: it is defined twice, by %s and %s",
					name, ErrInvalidMachine, found[0].location, found[1].location),
			}
			continue
		}
		o := found[0]
		if e := old[name]; e != nil && e.version != "" && e.version == o.version && e.location == o.location {
			next[name] = e
			continue
		}
		toRead = append(toRead, o)
	}

	failed := false
	for i, e := range c.readAll(ctx, toRead) {
		o := toRead[i]
		if e.err != nil && !errors.Is(e.err, ErrInvalidMachine) {
			failed = true
			if prev := old[o.name]; prev != nil && prev.machine != nil {
				// Keep serving the machine we have; version "" re-reads it
				// at the next refresh.
				e = &entry{location: prev.location, machine: prev.machine}
			}
		}
		next[o.name] = e
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = next
	for _, e := range next {
		if e.machine != nil {
			c.keepVersion(e.machine)
		}
	}
	c.lastErr = nil
	c.nextRefresh = start.Add(c.opts.RefreshInterval)
	if failed {
		c.nextRefresh = start.Add(c.opts.MissInterval)
	}
	return nil
}

// readAll reads and parses objs, a few at a time, so a cold start with many
// machines does not pay one S3 round trip after another.
func (c *Catalog) readAll(ctx context.Context, objs []object) []*entry {
	const workers = 8
	out := make([]*entry, len(objs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for i, o := range objs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = c.load(ctx, o)
		}()
	}
	wg.Wait()
	return out
}

// load reads and parses one machine file.
func (c *Catalog) load(ctx context.Context, o object) *entry {
	c.reads.Add(1)
	data, version, err := c.src.read(ctx, o)
	if err != nil {
		return &entry{location: o.location, err: fmt.Errorf("error reading machine %s from %s: %w", o.name, o.location, err)}
	}
	if version == "" {
		version = o.version
	}
	e := &entry{location: o.location, version: version}
	if len(data) > machine.MaxFileSize {
		e.err = fmt.Errorf("machine %s: %w: %s is larger than %d bytes", o.name, ErrInvalidMachine, o.location, machine.MaxFileSize)
		return e
	}
	m, err := machine.Parse(o.name, o.location, data, c.opts.Kinds)
	if err != nil {
		// Both wrapped: errors.Is finds the sentinel, errors.As the problems.
		e.err = fmt.Errorf("machine %s: %w:\n%w", o.name, ErrInvalidMachine, err)
		return e
	}
	e.machine = m
	return e
}
