package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Bundle layout and annotation keys of the registry+v1 format.
const (
	ManifestsDir = "manifests"
	MetadataDir  = "metadata"

	AnnotationMediaType      = "operators.operatorframework.io.bundle.mediatype.v1"
	AnnotationManifests      = "operators.operatorframework.io.bundle.manifests.v1"
	AnnotationMetadata       = "operators.operatorframework.io.bundle.metadata.v1"
	AnnotationPackage        = "operators.operatorframework.io.bundle.package.v1"
	AnnotationChannels       = "operators.operatorframework.io.bundle.channels.v1"
	AnnotationDefaultChannel = "operators.operatorframework.io.bundle.channel.default.v1"

	MediaTypeRegistryV1 = "registry+v1"

	CSVAPIVersion = "operators.coreos.com/v1alpha1"
	CSVKind       = "ClusterServiceVersion"

	// DefaultMinKubeVersion: the CRD's validation rules use CEL transition rules and the
	// quantity library, which every supported Kubernetes release has since 1.30.
	DefaultMinKubeVersion = "1.30.0"

	rbacGroup = "rbac.authorization.k8s.io"
)

// Options are the bundle's identity.
type Options struct {
	Version        string
	Image          string
	Package        string
	Channels       []string
	DefaultChannel string
	MinKubeVersion string
}

// Bundle is the generated output: file contents keyed by path relative to the bundle
// directory, and the metadata annotations (also used for the Dockerfile's LABELs).
type Bundle struct {
	Files       map[string][]byte
	Annotations map[string]string
}

// Object is one Kubernetes object as decoded JSON.
type Object = map[string]any

// ReadObjects decodes a multi-document YAML stream, skipping empty documents.
func ReadObjects(r io.Reader) ([]Object, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []Object
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read YAML document: %w", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var obj Object
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("decode YAML document %d: %w", len(objs)+1, err)
		}
		if len(obj) == 0 {
			continue
		}
		if kindOf(obj) == "" || str(obj, "apiVersion") == "" {
			return nil, fmt.Errorf("document %d has no apiVersion or kind", len(objs)+1)
		}
		objs = append(objs, obj)
	}
}

// Generate builds the bundle from the operator's manifests and samples.
func Generate(objs []Object, o Options) (*Bundle, error) {
	if o.Version == "" {
		return nil, errors.New("--version is required")
	}
	if strings.HasPrefix(o.Version, "v") {
		return nil, fmt.Errorf("--version %q: give the semantic version without a leading v", o.Version)
	}
	if o.Package == "" || len(o.Channels) == 0 {
		return nil, errors.New("a package name and at least one channel are required")
	}
	if o.DefaultChannel == "" {
		o.DefaultChannel = o.Channels[0]
	}
	if !contains(o.Channels, o.DefaultChannel) {
		return nil, fmt.Errorf("default channel %q is not one of the channels %v", o.DefaultChannel, o.Channels)
	}

	var crds, deployments, roles, clusterRoles, bindings, clusterBindings, rest []Object
	for _, obj := range objs {
		switch gk := groupKind(obj); gk {
		case "CustomResourceDefinition.apiextensions.k8s.io":
			crds = append(crds, obj)
		case "Deployment.apps":
			deployments = append(deployments, obj)
		case "Role." + rbacGroup:
			roles = append(roles, obj)
		case "ClusterRole." + rbacGroup:
			clusterRoles = append(clusterRoles, obj)
		case "RoleBinding." + rbacGroup:
			bindings = append(bindings, obj)
		case "ClusterRoleBinding." + rbacGroup:
			clusterBindings = append(clusterBindings, obj)
		default:
			rest = append(rest, obj)
		}
	}
	if len(crds) == 0 {
		return nil, errors.New("no CustomResourceDefinition in the input")
	}
	if len(deployments) == 0 {
		return nil, errors.New("no Deployment in the input")
	}

	files := map[string][]byte{}
	owned := map[string]bool{} // Kind.group of the owned CRDs
	var ownedDescs []any
	for _, crd := range crds {
		group := nestedString(crd, "spec", "group")
		plural := nestedString(crd, "spec", "names", "plural")
		kind := nestedString(crd, "spec", "names", "kind")
		if group == "" || plural == "" || kind == "" {
			return nil, fmt.Errorf("CustomResourceDefinition %q lacks spec.group or spec.names", name(crd))
		}
		owned[kind+"."+group] = true
		versions, _, _ := unstructured.NestedSlice(crd, "spec", "versions")
		for _, v := range versions {
			vm, ok := v.(map[string]any)
			if !ok || vm["served"] != true {
				continue
			}
			ownedDescs = append(ownedDescs, map[string]any{
				"name":        name(crd),
				"version":     vm["name"],
				"kind":        kind,
				"displayName": displayName(kind),
				"description": nestedString(vm, "schema", "openAPIV3Schema", "description"),
			})
		}
		data, err := marshal(crd)
		if err != nil {
			return nil, err
		}
		files[ManifestsDir+"/"+group+"_"+plural+".yaml"] = data
	}

	// The service accounts the operator's Deployments run as, and what is bound to them.
	accounts := map[string]bool{}
	var deploySpecs []any
	for _, d := range deployments {
		spec, _, _ := unstructured.NestedMap(d, "spec")
		if spec == nil {
			return nil, fmt.Errorf("read Deployment %q: no spec", name(d))
		}
		if o.Image != "" {
			if err := setImage(spec, o.Image); err != nil {
				return nil, fmt.Errorf("set image of Deployment %q: %w", name(d), err)
			}
		}
		sa := nestedString(spec, "template", "spec", "serviceAccountName")
		if sa == "" {
			sa = "default"
		}
		accounts[sa] = true
		entry := map[string]any{"name": name(d), "spec": spec}
		if labels, ok, _ := unstructured.NestedMap(d, "metadata", "labels"); ok {
			entry["label"] = labels
		}
		deploySpecs = append(deploySpecs, entry)
	}
	permissions, boundRoles, err := permissionsFor(accounts, bindings, roles, clusterRoles, "Role")
	if err != nil {
		return nil, err
	}
	clusterPermissions, boundClusterRoles, err := permissionsFor(accounts, clusterBindings, nil, clusterRoles, "ClusterRole")
	if err != nil {
		return nil, err
	}

	// Everything else OLM can install as is: Services and Roles/ClusterRoles that are not
	// the operator's own (the aggregated viewer/editor roles for people).
	var examples []any
	sampled := map[string]bool{}
	for _, obj := range rest {
		switch groupKind(obj) {
		case "Namespace", "ServiceAccount":
			continue
		case "Service", "ConfigMap":
			files[ManifestsDir+"/"+extraFileName(obj)], err = marshal(stripNamespace(obj))
			if err != nil {
				return nil, err
			}
		default:
			if owned[groupKind(obj)] {
				examples = append(examples, stripNamespace(obj))
				sampled[groupKind(obj)] = true
				continue
			}
			return nil, fmt.Errorf("%s %q: OLM bundles cannot carry this kind", groupKind(obj), name(obj))
		}
	}
	for _, r := range append(append([]Object{}, roles...), clusterRoles...) {
		if (kindOf(r) == "Role" && boundRoles[name(r)]) || (kindOf(r) == "ClusterRole" && boundClusterRoles[name(r)]) {
			continue
		}
		files[ManifestsDir+"/"+extraFileName(r)], err = marshal(stripNamespace(r))
		if err != nil {
			return nil, err
		}
	}
	for _, gk := range slices.Sorted(maps.Keys(owned)) {
		if !sampled[gk] {
			return nil, fmt.Errorf("no sample of the owned kind %s in the input (config/samples): alm-examples would not show it", gk)
		}
	}
	almExamples, err := json.MarshalIndent(examples, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode alm-examples: %w", err)
	}

	install := map[string]any{"deployments": deploySpecs}
	if len(permissions) > 0 {
		install["permissions"] = permissions
	}
	if len(clusterPermissions) > 0 {
		install["clusterPermissions"] = clusterPermissions
	}
	csv := map[string]any{
		"apiVersion": CSVAPIVersion,
		"kind":       CSVKind,
		"metadata": map[string]any{
			"name": o.Package + ".v" + o.Version,
			"annotations": map[string]any{
				"alm-examples":                           string(almExamples),
				"capabilities":                           "Basic Install",
				"categories":                             "Developer Tools",
				"containerImage":                         o.Image,
				"description":                            csvShortDescription,
				"repository":                             "https://github.com/dockyard-dev/dockyard",
				"support":                                "Dockyard",
				"operators.operatorframework.io/builder": "dockyard-bundlegen",
			},
		},
		"spec": map[string]any{
			"displayName": "Dockyard",
			"description": csvDescription,
			"version":     o.Version,
			"maturity":    "alpha",
			"provider":    map[string]any{"name": "Dockyard"},
			"links": []any{
				map[string]any{"name": "Source", "url": "https://github.com/dockyard-dev/dockyard"},
			},
			"keywords":       []any{"registry", "oci", "container images", "distribution"},
			"minKubeVersion": o.MinKubeVersion,
			// The manager watches Registries in every namespace with a ClusterRole.
			"installModes": []any{
				map[string]any{"type": "OwnNamespace", "supported": false},
				map[string]any{"type": "SingleNamespace", "supported": false},
				map[string]any{"type": "MultiNamespace", "supported": false},
				map[string]any{"type": "AllNamespaces", "supported": true},
			},
			"customresourcedefinitions": map[string]any{"owned": ownedDescs},
			"install":                   map[string]any{"strategy": "deployment", "spec": install},
		},
	}
	if o.Image != "" {
		// Mirroring tools read relatedImages; the one image also runs the registry pods.
		if err := unstructured.SetNestedSlice(csv, []any{map[string]any{"name": o.Package, "image": o.Image}}, "spec", "relatedImages"); err != nil {
			return nil, fmt.Errorf("set relatedImages: %w", err)
		}
	}
	if files[ManifestsDir+"/"+o.Package+".clusterserviceversion.yaml"], err = marshal(csv); err != nil {
		return nil, err
	}

	ann := map[string]string{
		AnnotationMediaType:      MediaTypeRegistryV1,
		AnnotationManifests:      ManifestsDir + "/",
		AnnotationMetadata:       MetadataDir + "/",
		AnnotationPackage:        o.Package,
		AnnotationChannels:       strings.Join(o.Channels, ","),
		AnnotationDefaultChannel: o.DefaultChannel,
	}
	if files[MetadataDir+"/annotations.yaml"], err = marshal(map[string]any{"annotations": ann}); err != nil {
		return nil, err
	}
	return &Bundle{Files: files, Annotations: ann}, nil
}

const csvShortDescription = "Runs private OCI container registries in the cluster: TLS, access control, garbage collection."

const csvDescription = `Dockyard runs private OCI / Docker registries inside the cluster. Write a ` + "`Registry`" + `
and Dockyard turns it into a running registry:

* storage on a PersistentVolumeClaim, S3, GCS or Azure Blob Storage (emptyDir for demos);
* HTTPS with a certificate from cert-manager (issuerRef) or an existing Secret;
* users from an htpasswd Secret, groups, and Manager / Viewer roles per repository pattern;
* scheduled garbage collection that never deletes a blob an in-flight push needs;
* retention policies (` + "`RetentionPolicy`" + `) that show their deletion plan in status before an enforced run deletes anything;
* status conditions (` + "`kubectl wait --for=condition=Ready registry/<name>`" + `) and Prometheus metrics.

One image carries both the operator and the registry workload, so air-gapped clusters
mirror exactly one image.
`

// permissionsFor collects, per service account, the rules of the roles bound to it by the
// given bindings. kind is the binding's roleRef kind to follow ("Role" for RoleBindings,
// which may also reference ClusterRoles; "ClusterRole" for ClusterRoleBindings). It returns
// the CSV entries and the names of the roles consumed.
func permissionsFor(accounts map[string]bool, bindings, roles, clusterRoles []Object, kind string) ([]any, map[string]bool, error) {
	byName := func(list []Object) map[string]Object {
		m := map[string]Object{}
		for _, r := range list {
			m[name(r)] = r
		}
		return m
	}
	roleByName, clusterRoleByName := byName(roles), byName(clusterRoles)
	rules := map[string][]any{} // service account -> rules
	used := map[string]bool{}
	for _, b := range bindings {
		subjects, _, _ := unstructured.NestedSlice(b, "subjects")
		var sas []string
		for _, s := range subjects {
			sm, _ := s.(map[string]any)
			if sm["kind"] == "ServiceAccount" && accounts[fmt.Sprint(sm["name"])] {
				sas = append(sas, fmt.Sprint(sm["name"]))
			}
		}
		if len(sas) == 0 {
			continue
		}
		refKind, refName := nestedString(b, "roleRef", "kind"), nestedString(b, "roleRef", "name")
		var role Object
		switch {
		case refKind == "Role" && kind == "Role":
			role = roleByName[refName]
		case refKind == "ClusterRole":
			role = clusterRoleByName[refName]
		}
		if role == nil {
			return nil, nil, fmt.Errorf("%s %q binds %s %q, which is not in the input", kindOf(b), name(b), refKind, refName)
		}
		if refKind == kind {
			used[refName] = true
		}
		rs, _, _ := unstructured.NestedSlice(role, "rules")
		for _, sa := range sas {
			rules[sa] = append(rules[sa], rs...)
		}
	}
	sas := make([]string, 0, len(rules))
	for sa := range rules {
		sas = append(sas, sa)
	}
	sort.Strings(sas)
	out := make([]any, 0, len(sas))
	for _, sa := range sas {
		out = append(out, map[string]any{"serviceAccountName": sa, "rules": rules[sa]})
	}
	return out, used, nil
}

// setImage points the manager container (named "manager", else the first) at image, and
// every env value in the pod that equalled its old image too (DOCKYARD_IMAGE).
func setImage(spec map[string]any, image string) error {
	containers, _, _ := unstructured.NestedSlice(spec, "template", "spec", "containers")
	if len(containers) == 0 {
		return errors.New("no containers")
	}
	idx := 0
	for i, c := range containers {
		if cm, _ := c.(map[string]any); cm["name"] == "manager" {
			idx = i
		}
	}
	mgr, _ := containers[idx].(map[string]any)
	old, _ := mgr["image"].(string)
	mgr["image"] = image
	for _, c := range containers {
		cm, _ := c.(map[string]any)
		env, _ := cm["env"].([]any)
		for _, e := range env {
			if em, _ := e.(map[string]any); em != nil && old != "" && em["value"] == old {
				em["value"] = image
			}
		}
	}
	return unstructured.SetNestedSlice(spec, containers, "template", "spec", "containers")
}

// Dockerfile returns the bundle image's Dockerfile: the annotations as LABELs and the
// bundle directories copied to the image root. dir is the bundle directory relative to the
// Dockerfile.
func Dockerfile(ann map[string]string, dir string) []byte {
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Generated by hack/bundlegen (make bundle); do not edit.\n")
	b.WriteString("# The OLM bundle image of Dockyard: docker build -f bundle.Dockerfile -t <bundle-image> .\n")
	b.WriteString("FROM scratch\n\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "LABEL %s=%s\n", k, ann[k])
	}
	fmt.Fprintf(&b, "\nCOPY %s/%s /%s/\n", dir, ManifestsDir, ManifestsDir)
	fmt.Fprintf(&b, "COPY %s/%s /%s/\n", dir, MetadataDir, MetadataDir)
	return []byte(b.String())
}

func marshal(obj any) ([]byte, error) {
	data, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return data, nil
}

// extraFileName follows the usual bundle naming: <name>_<group>_<version>_<kind>.yaml,
// with "v1" alone for the core group.
func extraFileName(obj Object) string {
	gv := strings.ReplaceAll(str(obj, "apiVersion"), "/", "_")
	return fmt.Sprintf("%s_%s_%s.yaml", name(obj), gv, strings.ToLower(kindOf(obj)))
}

func stripNamespace(obj Object) Object {
	out := unstructured.Unstructured{Object: obj}
	c := out.DeepCopy()
	c.SetNamespace("")
	return c.Object
}

// displayName splits a Kind into words: ReplicationRule -> Replication Rule.
func displayName(kind string) string {
	var b strings.Builder
	rs := []rune(kind)
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) && (unicode.IsLower(rs[i-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
			b.WriteRune(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// groupKind is "Kind.group", or "Kind" for the core group.
func groupKind(obj Object) string {
	k := kindOf(obj)
	if g, _, ok := strings.Cut(str(obj, "apiVersion"), "/"); ok {
		return k + "." + g
	}
	return k
}

func kindOf(obj Object) string { return str(obj, "kind") }

func name(obj Object) string { return nestedString(obj, "metadata", "name") }

func str(obj Object, key string) string {
	s, _ := obj[key].(string)
	return s
}

func nestedString(obj map[string]any, fields ...string) string {
	s, _, _ := unstructured.NestedString(obj, fields...)
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
