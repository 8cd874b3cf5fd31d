package applier

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/engine"
	"github.com/stackseam/stackseam/internal/machine"
	"github.com/stackseam/stackseam/internal/message"
)

// machinesSnapshot is a catalog's parsed state, held in memory: Get and Names
// must not be called under the lock, so they fail the test.
type machinesSnapshot struct {
	t        *testing.T
	current  map[string]*machine.Machine
	errs     map[string]error
	versions map[string]*machine.Machine
}

func (m *machinesSnapshot) Get(context.Context, string) (*machine.Machine, error) {
	m.t.Fatal("Get called under the lock")
	return nil, nil
}

func (m *machinesSnapshot) Names(context.Context) ([]string, error) {
	m.t.Fatal("Names called under the lock")
	return nil, nil
}

func (m *machinesSnapshot) Loaded(name string) (*machine.Machine, error) {
	if err := m.errs[name]; err != nil {
		return nil, err
	}
	if c := m.current[name]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("machine %s: %w", name, catalog.ErrUnknownMachine)
}

func (m *machinesSnapshot) Version(hash string) *machine.Machine { return m.versions[hash] }

func (m *machinesSnapshot) Remember(string, []byte) (*machine.Machine, error) {
	m.t.Fatal("Remember called under the lock")
	return nil, nil
}

func version(hash string, states ...string) *machine.Machine {
	m := &machine.Machine{Name: "env", Hash: hash, States: map[string]*machine.State{}}
	for _, s := range states {
		m.States[s] = &machine.State{Name: s}
	}
	return m
}

func TestPickMachine(t *testing.T) {
	t.Parallel()
	v1 := version("h1", "INIT", "RUN")
	v2 := version("h2", "INIT", "LIVE") // RUN renamed
	invalid := fmt.Errorf("machine env: %w: line 3: unknown key", catalog.ErrInvalidMachine)
	unavailable := errors.New("S3 is down")
	result := message.Event{Event: message.EventTaskCompleted, StackID: "s"}
	inRun := &engine.Stack{ID: "s", Machine: "env", State: "RUN", MachineHash: "h1"}

	cases := []struct {
		name      string
		current   *machine.Machine
		err       error
		versions  []*machine.Machine
		stack     *engine.Stack
		want      *machine.Machine
		wantErr   error // the machine error handed to the engine
		fellBack  bool
		needsLoad bool
		retry     bool
		unusable  string
	}{
		{name: "the current version has the state", current: v1, versions: []*machine.Machine{v1}, stack: inRun, want: v1},
		{name: "a new version with the state is used at once", current: version("h3", "RUN"), stack: inRun, want: nil},
		{name: "a new version without the state: the stack's version", current: v2, versions: []*machine.Machine{v1, v2}, stack: inRun, want: v1},
		{name: "a broken file: the stack's version", err: invalid, versions: []*machine.Machine{v1}, stack: inRun, want: v1, fellBack: true},
		{name: "a deleted file: the stack's version", versions: []*machine.Machine{v1}, stack: inRun, want: v1, fellBack: true},
		{name: "the stack's version not parsed here: load it outside", err: invalid, stack: inRun, needsLoad: true},
		{name: "a stack from before versions: rejected with the reason", err: invalid,
			stack: &engine.Stack{ID: "s", Machine: "env", State: "RUN"}, wantErr: catalog.ErrInvalidMachine},
		{name: "the stack's version cannot be loaded for good: rejected with the reason", err: invalid, stack: inRun,
			unusable: "h1", wantErr: catalog.ErrInvalidMachine},
		{name: "a source outage with nothing to fall back to: retried", err: unavailable,
			stack: &engine.Stack{ID: "s", Machine: "env", State: "RUN"}, retry: true},
		{name: "a source outage: the stack's version", err: unavailable, versions: []*machine.Machine{v1}, stack: inRun, want: v1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			snap := &machinesSnapshot{t: t, current: map[string]*machine.Machine{}, errs: map[string]error{}, versions: map[string]*machine.Machine{}}
			if tc.current != nil {
				snap.current["env"] = tc.current
			}
			if tc.err != nil {
				snap.errs["env"] = tc.err
			}
			for _, v := range tc.versions {
				snap.versions[v.Hash] = v
			}
			a := &Applier{Machines: snap}
			m, mErr, fellBack, err := a.pickMachine(tc.stack, result, nil, nil, tc.unusable)
			var need *needVersion
			switch {
			case tc.needsLoad:
				require.ErrorAs(t, err, &need)
				require.Equal(t, "h1", need.hash)
				return
			case tc.retry:
				require.Error(t, err)
				require.NotErrorAs(t, err, &need)
				return
			}
			require.NoError(t, err)
			if tc.wantErr != nil {
				require.Nil(t, m)
				require.ErrorIs(t, mErr, tc.wantErr)
				return
			}
			require.NoError(t, mErr)
			want := tc.want
			if want == nil {
				want = tc.current
			}
			require.Same(t, want, m)
			require.Equal(t, tc.fellBack, fellBack != "", "fellBack: %q", fellBack)
		})
	}
}
