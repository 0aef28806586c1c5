package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSystemNamesSayWhichScenariosRunAMesh checks the -systems usage text:
// a system only the whole-process scenarios run (raw-tcp-mesh, json-off, …)
// is followed by the scenarios that run it, and by no other.
func TestSystemNamesSayWhichScenariosRunAMesh(t *testing.T) {
	annotated := map[string][]string{}
	for _, m := range regexp.MustCompile(`([a-z0-9-]+) \(([a-z, -]+)\)`).FindAllStringSubmatch(systemNames(), -1) {
		if m[2] != "opt-in" {
			annotated[m[1]] = strings.Split(m[2], ", ")
		}
	}
	for _, e := range meshRegistry {
		if _, ok := findSystem(e.Name); ok {
			continue // a messaging system too ("internode")
		}
		var runs []string
		for _, sc := range scenarioRegistry {
			if systems, _, err := systemsFor(sc, e.Name); err == nil && len(systems) == 1 {
				runs = append(runs, sc.Name)
			}
		}
		if !slices.Equal(annotated[e.Name], runs) {
			t.Errorf("-systems usage text gives %s as (%s); the scenarios that run it: %s",
				e.Name, strings.Join(annotated[e.Name], ", "), strings.Join(runs, ", "))
		}
	}
}
