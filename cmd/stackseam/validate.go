package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/stackseam/stackseam/functions/machine"
)

// runValidate checks every machine file named on the command line (folders:
// every .yml/.yaml directly inside) and prints OK or every problem.
func runValidate(_ context.Context, cmd *command, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmd)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "stackseam validate: name at least one machine file or folder")
		fs.Usage()
		return exitUsage
	}
	code := exitOK
	for _, path := range fs.Args() {
		files, err := machineFiles(path)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			code = exitFail
			continue
		}
		for _, f := range files {
			if !validateFile(f, stdout, stderr) {
				code = exitFail
			}
		}
	}
	return code
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
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("error reading folder %s: %w", path, err)
	}
	var files []string
	byName := map[string]string{}
	for _, e := range entries {
		name, ok := machine.NameFromFile(e.Name())
		if !ok || e.IsDir() {
			continue
		}
		f := filepath.Join(path, e.Name())
		if other, dup := byName[name]; dup {
			return nil, fmt.Errorf("%s: machine %s is also defined by %s", f, name, other)
		}
		byName[name] = f
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .yml or .yaml files in this folder", path)
	}
	sort.Strings(files)
	return files, nil
}

// validateFile prints the verdict on one file and reports whether it is valid.
func validateFile(path string, stdout, stderr io.Writer) bool {
	m, err := machine.ParseFile(path)
	if err != nil {
		var verr *machine.ValidationError
		if errors.As(err, &verr) {
			for _, p := range verr.Problems {
				fmt.Fprintln(stderr, p.String())
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		return false
	}
	fmt.Fprintf(stdout, "OK %s\n", m.Name)
	for _, w := range m.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w.String())
	}
	return true
}
