package stackseam

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stackseam/stackseam/functions/engine"
)

// emitted is what the functions' source writes with the metrics package: metric names, dimension
// names, the Function dimension of each main package, and every string literal assigned to a
// variable named result (the Result dimension's values).
type emitted struct {
	metrics, dims, functions, results map[string]bool
}

// scanMetrics reads the non-test Go files of dirs (relative to the module root).
func scanMetrics(t *testing.T, dirs ...string) emitted {
	t.Helper()
	e := emitted{metrics: map[string]bool{}, dims: map[string]bool{}, functions: map[string]bool{}, results: map[string]bool{}}
	str := func(x ast.Expr) (string, bool) {
		lit, ok := x.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(lit.Value)
		require.NoError(t, err)
		return s, true
	}
	isMetrics := func(x ast.Expr, name string) bool {
		sel, ok := x.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		pkg, ok := sel.X.(*ast.Ident)
		return ok && pkg.Name == "metrics" && sel.Sel.Name == name
	}
	record := func(lit *ast.CompositeLit, value, dim bool) {
		if !value && !dim {
			return
		}
		for _, el := range lit.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			s, ok := str(kv.Value)
			switch key := kv.Key.(*ast.Ident).Name; {
			case !ok:
			case value && key == "Name":
				e.metrics[s] = true
			case dim && key == "Name":
				e.dims[s] = true
			}
		}
	}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join("..", dir, "*.go"))
		require.NoError(t, err)
		require.NotEmpty(t, files, dir)
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			require.NoError(t, err)
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CompositeLit:
					// metrics.Dim{…}, or an element of []metrics.Dim{{…}} (its type elided).
					if arr, ok := n.Type.(*ast.ArrayType); ok {
						for _, el := range n.Elts {
							if lit, ok := el.(*ast.CompositeLit); ok && lit.Type == nil {
								record(lit, isMetrics(arr.Elt, "Value"), isMetrics(arr.Elt, "Dim"))
							}
						}
						return true
					}
					record(n, isMetrics(n.Type, "Value"), isMetrics(n.Type, "Dim"))
				case *ast.CallExpr:
					if isMetrics(n.Fun, "New") && len(n.Args) == 2 {
						if s, ok := str(n.Args[1]); ok {
							e.functions[s] = true
						}
					}
				case *ast.AssignStmt:
					for i, lhs := range n.Lhs {
						if id, ok := lhs.(*ast.Ident); ok && id.Name == "result" && i < len(n.Rhs) {
							if s, ok := str(n.Rhs[i]); ok {
								e.results[s] = true
							}
						}
					}
				}
				return true
			})
		}
	}
	return e
}

// The dashboard and alarms query metrics by name and dimension; a renamed metric would leave
// them silently empty, so the names are checked against what the functions write.
func TestMetricNamesMatchTheFunctions(t *testing.T) {
	t.Parallel()
	stateManager := scanMetrics(t, "functions/applier", "functions/statemanager")
	satisfier := scanMetrics(t, "functions/executor", "functions/satisfier")

	require.Equal(t, map[string]bool{fnStateManager: true}, stateManager.functions)
	require.Equal(t, map[string]bool{fnSatisfier: true}, satisfier.functions)
	for _, m := range []string{metricEvents, metricTransitions, metricExpired, metricTaskResults, metricTaskDuration, metricOutboxLag, metricOutboxSent} {
		require.True(t, stateManager.metrics[m], "the state manager writes no metric %s", m)
	}
	for _, m := range []string{metricTaskRuns, metricTaskRunDuration} {
		require.True(t, satisfier.metrics[m], "the satisfier writes no metric %s", m)
	}
	for _, d := range []string{dimOutcome, dimEvent, dimExecutor, dimResult, dimDestination} {
		require.True(t, stateManager.dims[d], "the state manager writes no dimension %s", d)
	}
	for _, d := range []string{dimExecutor, dimResult} {
		require.True(t, satisfier.dims[d], "the satisfier writes no dimension %s", d)
	}
	// The metrics package adds Function to every record.
	require.Equal(t, "Function", dimFunction)

	// The values the alarms filter on.
	require.Equal(t, string(engine.Rejected), outcomeRejected)
	require.True(t, stateManager.results[resultFailed], "the state manager's Result values: %v", stateManager.results)
	require.True(t, satisfier.results[resultFailed], "the satisfier's Result values: %v", satisfier.results)
}
