package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path"
	"path/filepath"
	"strconv"
	"testing"
)

// TestUnitWritesMetricsDir: the directory of the agent's example metrics
// text file (metrics.DefaultPath, Debian's prometheus-node-exporter textfile
// directory) is writable under ProtectSystem=strict, and optional ("-") on
// gateways without node_exporter.
func TestUnitWritesMetricsDir(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(repoRoot, "cmd", "cityedge", "internal", "metrics", "metrics.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var def string
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Names) == 1 && vs.Names[0].Name == "DefaultPath" && len(vs.Values) == 1 {
			if lit, ok := vs.Values[0].(*ast.BasicLit); ok {
				def, _ = strconv.Unquote(lit.Value)
			}
		}
		return true
	})
	if def == "" {
		t.Fatal("metrics.DefaultPath not found")
	}
	u := parseUnit(t, unitFile)
	want := "-" + path.Dir(def)
	if !contains(u["Service.ReadWritePaths"], want) {
		t.Errorf("ReadWritePaths=%v lacks %s: the agent could not write %s under ProtectSystem=strict", u["Service.ReadWritePaths"], want, def)
	}
}
