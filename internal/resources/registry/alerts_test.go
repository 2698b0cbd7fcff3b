package registry

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/testfixture/promtool"
)

func alertNames(pr *monitoringv1.PrometheusRule) []string {
	var names []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
		}
	}
	return names
}

// allAlerts is the Registry of testdata/alerts.test.yaml: every alert applies to it.
func allAlerts(r *v1alpha1.Registry) {
	r.Namespace, r.Name = "team-a", "registry"
	issuer(r)
	r.Spec.GarbageCollection = &v1alpha1.GarbageCollectionSpec{Schedule: "0 3 * * *"}
	r.Spec.Backup = &v1alpha1.BackupSpec{Schedule: "0 1 * * *", Destination: v1alpha1.BackupLocation{Volume: &v1alpha1.BackupVolume{ClaimName: "backups"}}}
	r.Spec.Scanning = &v1alpha1.ScanningSpec{Database: &v1alpha1.ScanDatabaseSpec{Repository: "security/trivy-db:2"}}
	r.Spec.Monitoring = &v1alpha1.MonitoringSpec{
		Labels: map[string]string{"release": "kube-prometheus-stack"},
		Alerts: &v1alpha1.AlertsSpec{Labels: map[string]string{"team": "platform"}},
	}
}

func TestPrometheusRuleHoldsOnlyAlertsThatApply(t *testing.T) {
	always := []string{AlertRegistryDown, AlertRegistryNotReady, AlertRegistryReplicasUnavailable, AlertRegistryHighErrorRate,
		AlertRegistryHighLatency, AlertRegistryEventsDropped, AlertRegistryReplicationFailing, AlertRegistryReplicationLagging, AlertRetentionFailed}
	storage := []string{AlertRegistryStorageNearlyFull, AlertRegistryStorageFull}
	certs := []string{AlertRegistryCertificateExpiring, AlertRegistryCertificateCritical}
	gcs := []string{AlertRegistryGCFailed, AlertRegistryGCNotRun}
	backups := []string{AlertRegistryBackupFailed, AlertRegistryBackupNotRun}
	scans := []string{AlertScanDatabaseStale, AlertScanBacklog}
	cases := []struct {
		name string
		reg  *v1alpha1.Registry
		want []string
	}{
		{"volume storage, no TLS, no GC", reg(), slices.Concat(always, storage)},
		{"object storage", reg(s3("")), always},
		{"TLS, GC, backups, scanning and a volume", reg(allAlerts), slices.Concat(always, storage, certs, gcs, backups, scans)},
		{"suspended GC and backups, no scanning", reg(allAlerts, func(r *v1alpha1.Registry) {
			r.Spec.GarbageCollection.Suspend = true
			r.Spec.Backup.Suspend = true
			r.Spec.Scanning = nil
		}), slices.Concat(always, storage, certs)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pr := PrometheusRule(tc.reg)
			if pr == nil {
				t.Fatal("no PrometheusRule")
			}
			got := alertNames(pr)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("alerts = %v, want %v", got, want)
			}
		})
	}
}

func TestPrometheusRuleScopeLabelsAndSwitches(t *testing.T) {
	r := reg(allAlerts)
	pr := PrometheusRule(r)
	if pr.Name != r.ServiceName() || pr.Namespace != "team-a" || pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("meta = %s/%s %v", pr.Namespace, pr.Name, pr.Labels)
	}
	if pr.Labels[LabelInstance] != "registry" {
		t.Errorf("our labels must win over spec.monitoring.labels: %v", pr.Labels)
	}
	scope := regexp.MustCompile(`namespace="team-a",registry="registry"|namespace="team-a",persistentvolumeclaim="registry-data"`)
	for _, rule := range pr.Spec.Groups[0].Rules {
		if !scope.MatchString(rule.Expr.String()) {
			t.Errorf("%s: expression not scoped to the Registry: %s", rule.Alert, rule.Expr.String())
		}
		if rule.Labels["team"] != "platform" || rule.Labels["registry"] != "registry" || rule.Labels["namespace"] != "team-a" {
			t.Errorf("%s: labels %v", rule.Alert, rule.Labels)
		}
		if s := rule.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q", rule.Alert, s)
		}
		if want := RunbookBase + strings.ToLower(rule.Alert); rule.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q", rule.Alert, rule.Annotations["runbook_url"])
		}
	}

	r.Spec.Monitoring.Alerts.Disabled = true
	if PrometheusRule(r) != nil {
		t.Error("alerts.disabled still writes a PrometheusRule")
	}
	if PodMonitor(r) == nil {
		t.Error("alerts.disabled removed the PodMonitor too")
	}
	r.Spec.Monitoring = &v1alpha1.MonitoringSpec{Disabled: true}
	if PrometheusRule(r) != nil {
		t.Error("monitoring.disabled still writes a PrometheusRule")
	}
}

func TestPodMonitorLabelsSeriesWithTheRegistry(t *testing.T) {
	pm := PodMonitor(reg())
	relabel := pm.Spec.PodMetricsEndpoints[0].RelabelConfigs
	if len(relabel) != 1 || relabel[0].TargetLabel != "registry" ||
		string(relabel[0].SourceLabels[0]) != "__meta_kubernetes_pod_label_app_kubernetes_io_instance" {
		t.Errorf("relabelings = %+v", relabel)
	}
	if pm.Spec.Selector.MatchLabels[LabelInstance] != "main" {
		t.Errorf("selector = %v: the relabeled pod label must be the one that selects", pm.Spec.Selector.MatchLabels)
	}
}

func TestSchedulePeriod(t *testing.T) {
	cases := map[string]time.Duration{
		"0 3 * * *":       24 * time.Hour,
		"@hourly":         time.Hour,
		"*/15 * * * *":    15 * time.Minute,
		"0 3 * * 0":       7 * 24 * time.Hour,
		"0 2 * * 1-5":     3 * 24 * time.Hour, // Friday to Monday
		"0 0 1 * *":       31 * 24 * time.Hour,
		"0 3 29 2 *":      1461 * 24 * time.Hour, // leap days only: 2028 to 2032
		"0 1,13 * * *":    12 * time.Hour,
		"30 4 1,15 * sun": 0, // checked below: cron ORs day-of-month and day-of-week
	}
	for sched, want := range cases {
		got, err := SchedulePeriod(sched)
		if err != nil {
			t.Errorf("%q: %v", sched, err)
			continue
		}
		if want != 0 && got != want {
			t.Errorf("%q: period %s, want %s", sched, got, want)
		}
		if got <= 0 || got > 5*366*24*time.Hour {
			t.Errorf("%q: period %s out of range", sched, got)
		}
	}
	if _, err := SchedulePeriod("61 * * * *"); err == nil {
		t.Error("an invalid schedule has a period")
	}
	if d := promDuration(72 * time.Hour); d != "72h" {
		t.Errorf("promDuration(72h) = %s", d)
	}
	if d := promDuration(45 * time.Minute); d != "45m" {
		t.Errorf("promDuration(45m) = %s", d)
	}
}

// TestAlertsWithPromtool writes the Registry's alerts as a Prometheus rule file, has the
// real promtool check it, and runs the rule unit tests of testdata/alerts.test.yaml against
// it: each alert fires on the series that should fire it (with its labels and the text a
// person reads) and stays silent on a healthy Registry and on another Registry's series.
func TestAlertsWithPromtool(t *testing.T) {
	pr := PrometheusRule(reg(allAlerts))
	rules, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := promtool.Run(t, dir, "check", "rules", "rules.yaml"); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n--- rules.yaml\n%s", err, out, rules)
	}
	out, err := promtool.Run(t, dir, "test", "rules", "alerts.test.yaml")
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every alert is exercised by the unit tests.
	for _, name := range alertNames(pr) {
		if !strings.Contains(string(tests), "alertname: "+name+"\n") {
			t.Errorf("testdata/alerts.test.yaml has no test for %s", name)
		}
	}
}

// TestEveryAlertHasARunbook keeps docs/runbooks.md and the alerts in step: a section per
// alert (its runbook_url anchor), and no section for an alert that does not exist.
func TestEveryAlertHasARunbook(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	var sections []string
	for _, m := range regexp.MustCompile(`(?m)^## (Dockyard\w+)$`).FindAllStringSubmatch(string(doc), -1) {
		sections = append(sections, m[1])
	}
	names := alertNames(PrometheusRule(reg(allAlerts)))
	for _, n := range names {
		if !slices.Contains(sections, n) {
			t.Errorf("docs/runbooks.md has no section \"## %s\"", n)
		}
	}
	for _, s := range sections {
		if !slices.Contains(names, s) {
			t.Errorf("docs/runbooks.md has a section for %s, which is no alert", s)
		}
	}
}
