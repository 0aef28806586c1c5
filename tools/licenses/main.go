// Command licenses lists the license of every module that internode's Go
// modules build or test with, fails if one is missing or not on the allowed
// list, and keeps docs/licenses.md true.
//
// Run it from the repository root:
//
//	go -C tools/licenses run . -root ../..          # check docs/licenses.md
//	go -C tools/licenses run . -root ../.. -write   # rewrite it
//
// It finds every go.mod in the repository (this tool's own aside), asks the go
// command which modules each one's packages and tests import, and classifies
// each module's license file with github.com/google/licensecheck, the
// classifier pkg.go.dev uses.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/licensecheck"
)

// allowed are the licenses whose terms let an Apache-2.0 project use the
// module: permissive ones, and MPL-2.0, whose file-level copyleft binds only
// changes to the MPL files themselves.
var allowed = map[string]bool{
	"Apache-2.0":   true,
	"MIT":          true,
	"BSD-2-Clause": true,
	"BSD-3-Clause": true,
	"ISC":          true,
	"MPL-2.0":      true,
	// Only examples/bench's charts (gonum/plot) reach these three: fonts
	// under the SIL Open Font License, svgo under CC-BY-4.0 (attribution),
	// and freetype under the FreeType License (BSD-style with a credit
	// clause; see chosen).
	"OFL-1.1":   true,
	"CC-BY-4.0": true,
	"FTL":       true,
}

// chosen names the license taken where a module offers a choice, and the
// file of the module that holds its text.
var chosen = map[string]struct{ license, file string }{
	// "Use of the Freetype-Go software is subject to your choice of exactly
	// one of": the FreeType License or GPL-2.0-or-later.
	"github.com/golang/freetype": {"FTL", "licenses/ftl.txt"},
}

// minCoverage is how much of a license file (percent of its words) known
// license texts must cover for the classification to count.
const minCoverage = 75

type module struct {
	path, version, dir string
	license            string
	users              map[string]string // repository module -> "build" or "tests"
}

func main() {
	root := flag.String("root", ".", "the repository root")
	write := flag.Bool("write", false, "rewrite docs/licenses.md instead of checking it")
	flag.Parse()
	if err := run(*root, *write); err != nil {
		fmt.Fprintln(os.Stderr, "licenses:", err)
		os.Exit(1)
	}
}

func run(root string, write bool) error {
	ourModules, err := findModules(root)
	if err != nil {
		return err
	}
	modules := map[string]*module{}
	for _, dir := range ourModules {
		for _, tests := range []bool{false, true} {
			deps, err := listDeps(filepath.Join(root, dir), tests)
			if err != nil {
				return err
			}
			for _, d := range deps {
				m := modules[d.path]
				if m == nil {
					m = &module{path: d.path, version: d.version, dir: d.dir, users: map[string]string{}}
					modules[d.path] = m
				}
				if _, seen := m.users[dir]; !seen {
					m.users[dir] = map[bool]string{false: "build", true: "tests"}[tests]
				}
			}
		}
	}
	var problems []string
	var rows []*module
	for _, m := range modules {
		m.license, err = classify(m.path, m.dir)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", m.path, err))
			continue
		}
		for _, name := range strings.Split(strings.TrimSuffix(m.license, " (chosen)"), " AND ") {
			if !allowed[name] {
				problems = append(problems, fmt.Sprintf("%s: license %s is not on the allowed list", m.path, m.license))
			}
		}
		rows = append(rows, m)
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("\n  %s", strings.Join(problems, "\n  "))
	}
	slices.SortFunc(rows, func(a, b *module) int { return strings.Compare(a.path, b.path) })
	table := render(rows, ourModules)
	doc := filepath.Join(root, "docs", "licenses.md")
	if write {
		return os.WriteFile(doc, table, 0o644)
	}
	have, err := os.ReadFile(doc)
	if err != nil {
		return fmt.Errorf("%v (run with -write to create it)", err)
	}
	if !bytes.Equal(have, table) {
		return fmt.Errorf("docs/licenses.md is out of date: the dependencies changed; run `go -C tools/licenses run . -root ../.. -write` and review the diff")
	}
	fmt.Printf("licenses: %d modules, every one under an allowed license, docs/licenses.md up to date\n", len(rows))
	return nil
}

// findModules returns the directories, relative to root, of the
// repository's go.mod files, this tool's own left out.
func findModules(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.Name() == "go.mod" {
			dir, _ := filepath.Rel(root, filepath.Dir(path))
			if filepath.ToSlash(dir) != "tools/licenses" {
				dirs = append(dirs, filepath.ToSlash(dir))
			}
		}
		return nil
	})
	slices.Sort(dirs)
	return dirs, err
}

type dep struct{ path, version, dir string }

// listDeps asks the go command for the modules that the packages of the
// module in dir import, with their tests' imports when tests is set.
func listDeps(dir string, tests bool) ([]dep, error) {
	args := []string{"list", "-deps"}
	if tests {
		args = append(args, "-test")
	}
	args = append(args, "-f", "{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Version}}\t{{if .Replace}}{{.Replace.Dir}}{{else}}{{.Dir}}{{end}}{{end}}{{end}}", "./...")
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list in %s: %v", dir, err)
	}
	var deps []dep
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 || seen[f[0]] || strings.HasPrefix(f[0], "github.com/internode/internode") {
			continue
		}
		seen[f[0]] = true
		deps = append(deps, dep{f[0], f[1], f[2]})
	}
	return deps, sc.Err()
}

// classify names the licenses of the license files at the root of a
// module's directory, joined by " AND ". A file that names no license of its
// own (a pointer such as svgo's LICENSE-link.txt) is passed over when another
// file beside it is recognised.
func classify(path, dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("module not downloaded")
	}
	if c, ok := chosen[path]; ok {
		text, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil {
			return "", err
		}
		cov := licensecheck.Scan(text)
		if cov.Percent < minCoverage || len(cov.Match) != 1 || cov.Match[0].ID != c.license {
			return "", fmt.Errorf("%s no longer reads as %s", c.file, c.license)
		}
		return c.license + " (chosen)", nil
	}
	var unrecognised []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	names := map[string]bool{}
	for _, e := range entries {
		lower := strings.ToLower(e.Name())
		if e.IsDir() || !(strings.HasPrefix(lower, "license") || strings.HasPrefix(lower, "licence") || strings.HasPrefix(lower, "copying")) {
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		cov := licensecheck.Scan(text)
		if cov.Percent < minCoverage {
			unrecognised = append(unrecognised, fmt.Sprintf("%s: only %.0f%% recognised as a known license", e.Name(), cov.Percent))
			continue
		}
		for _, m := range cov.Match {
			names[m.ID] = true
		}
	}
	if len(names) == 0 && len(unrecognised) > 0 {
		return "", fmt.Errorf("%s", strings.Join(unrecognised, "; "))
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no license file")
	}
	return strings.Join(slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}), " AND "), nil
}

func render(rows []*module, ourModules []string) []byte {
	var b bytes.Buffer
	b.WriteString("# Dependency licenses\n\n")
	b.WriteString("Every module that internode's Go modules build or test with, and its license as\n")
	b.WriteString("github.com/google/licensecheck classifies the module's license file. internode is\n")
	b.WriteString("Apache-2.0; each license below lets it use the module. Generated and checked by\n")
	b.WriteString("`go -C tools/licenses run . -root ../..` (CI runs the check; `-write` regenerates).\n\n")
	names := make([]string, len(ourModules))
	for i, m := range ourModules {
		names[i] = "`" + m + "`"
		if m == "." {
			names[i] = "`.` (the library)"
		}
	}
	fmt.Fprintf(&b, "\"build\": imported by a module's packages; \"tests\": only by its tests. Modules:\n%s.\n", strings.Join(names, ", "))
	b.WriteString("\n| Module | Version | License | Used by |\n|---|---|---|---|\n")
	for _, m := range rows {
		var users []string
		for _, our := range ourModules {
			if how, ok := m.users[our]; ok {
				name := our
				if our == "." {
					name = "library"
				}
				users = append(users, name+" ("+how+")")
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", m.path, m.version, m.license, strings.Join(users, ", "))
	}
	return b.Bytes()
}
