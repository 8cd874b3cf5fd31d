package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/stackseam/stackseam/internal/catalog"
	"github.com/stackseam/stackseam/internal/machine"
)

var validateCommand = &command{
	name:    "validate",
	args:    "PATH...",
	summary: "check machine files (files or folders of .yml/.yaml)",
	help: `
Prints "OK NAME" and any warnings for each valid machine, or every problem of
an invalid one as FILE:LINE:COL: MESSAGE [RULE] on stderr. Exits 1 when any
file is invalid. Folders are read one level deep, as the state manager does.

The same rules, minus the cross-references between states, tasks and events,
are in machines/machine.schema.json for editors.

examples:
  stackseam validate machines/
  stackseam validate --output json machines/feature-env.yml`,
	run: runValidate,
}

// runValidate checks every machine file named on the command line (folders:
// every .yml/.yaml directly inside) and prints OK or every problem.
func runValidate(_ context.Context, c *cli, cmd *command, args []string) int {
	fs := newFlags(cmd)
	var out outputFlag
	out.register(fs)
	paths, code, done := parseFlags(fs, args, c.stdout, c.stderr)
	if done {
		return code
	}
	if len(paths) == 0 {
		return usageError(c, fs, "name at least one machine file or folder")
	}
	var results []validateResult
	for _, path := range paths {
		files, err := machineFiles(path)
		if err != nil {
			results = append(results, validateResult{File: path, Error: err.Error()})
			continue
		}
		for _, f := range files {
			results = append(results, validateFile(f))
		}
	}
	code = exitOK
	for _, r := range results {
		if !r.Valid {
			code = exitFail
		}
	}
	if out.json() {
		if printJSON(c, cmd, results) != exitOK {
			return exitFail
		}
		return code
	}
	for _, r := range results {
		switch {
		case r.Error != "":
			fmt.Fprintln(c.stderr, r.Error)
		case !r.Valid:
			for _, p := range r.Problems {
				fmt.Fprintln(c.stderr, p.String())
			}
		default:
			fmt.Fprintf(c.stdout, "OK %s\n", r.Machine)
			for _, w := range r.Warnings {
				fmt.Fprintf(c.stdout, "warning: %s\n", w.String())
			}
		}
	}
	return code
}

// validateResult is the verdict on one file (--output json prints a list of
// them).
type validateResult struct {
	File    string `json:"file"`
	Machine string `json:"machine,omitempty"`
	Valid   bool   `json:"valid"`
	// Error is set when the file could not be read at all.
	Error    string        `json:"error,omitempty"`
	Problems []problemJSON `json:"problems,omitempty"`
	Warnings []problemJSON `json:"warnings,omitempty"`
}

// problemJSON is a machine.Problem with JSON field names.
type problemJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (p problemJSON) String() string {
	return machine.Problem{File: p.File, Line: p.Line, Column: p.Column, Rule: p.Rule, Message: p.Message}.String()
}

func problemsJSON(ps []machine.Problem) []problemJSON {
	out := make([]problemJSON, len(ps))
	for i, p := range ps {
		out[i] = problemJSON{File: p.File, Line: p.Line, Column: p.Column, Rule: p.Rule, Message: p.Message}
	}
	return out
}

// machineFiles expands path to the machine files it names: itself, or the
// .yml/.yaml files directly inside a folder. Two files of one folder that
// give the same machine name (a.yml, a.yaml) are an error, as the catalog
// could not tell which one is meant.
func machineFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", path, errors.Unwrap(err))
	}
	if !info.IsDir() {
		if _, ok := machine.NameFromFile(path); !ok {
			return nil, fmt.Errorf("%s: not a machine file (the name must end in .yml or .yaml)", path)
		}
		return []string{path}, nil
	}
	found, err := catalog.DirFiles(path) // the files the state manager would load
	if err != nil {
		return nil, fmt.Errorf("error reading folder %s: %w", path, err)
	}
	var files []string
	byName := map[string]string{}
	for _, f := range found {
		if other, dup := byName[f.Name]; dup {
			return nil, fmt.Errorf("%s: machine %s is also defined by %s", f.Path, f.Name, other)
		}
		byName[f.Name] = f.Path
		files = append(files, f.Path)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .yml or .yaml files in this folder", path)
	}
	sort.Strings(files)
	return files, nil
}

// validateFile judges one file.
func validateFile(path string) validateResult {
	r := validateResult{File: path}
	r.Machine, _ = machine.NameFromFile(path)
	m, err := catalog.ParseFile(path)
	if err != nil {
		var verr *machine.ValidationError
		if errors.As(err, &verr) {
			r.Problems = problemsJSON(verr.Problems)
		} else {
			r.Error = err.Error()
		}
		return r
	}
	r.Valid = true
	r.Warnings = problemsJSON(m.Warnings)
	return r
}
