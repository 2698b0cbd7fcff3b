package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dockyard-dev/dockyard/api/v1alpha1"
	"github.com/dockyard-dev/dockyard/internal/registryconfig"
)

// Robot credential timing.
const (
	// RobotPublishLead is how long a rotated password waits (in the robot Secret's
	// pending-password key) after its hash was published, so every replica knows it before
	// any client uses it: kubelet refreshes Secret volumes within about a minute.
	RobotPublishLead = 3 * time.Minute
	// RobotExpiredKept is how long an expired credential stays listed, so a client still
	// using it is told "expired" (in the audit log) rather than "wrong password".
	RobotExpiredKept = 24 * time.Hour
)

// LabelRobot marks a robot's credentials Secret with the robot's name.
const LabelRobot = "registry.dockyard.dev/robot"

// RobotPasswords are the passwords a robot's Secret holds: the one clients use and, during
// a rotation, the next one.
type RobotPasswords struct {
	Current, Pending string
}

// NewRobotPassword returns a random password: 32 bytes, base64url, with a dyr_ prefix so
// secret scanners can spot a leaked one.
func NewRobotPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "dyr_" + base64.RawURLEncoding.EncodeToString(b), nil
}

func passwordHash(p string) string {
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:])
}

func credentialFor(creds []registryconfig.RobotToken, password string) *registryconfig.RobotToken {
	if password == "" {
		return nil
	}
	h := passwordHash(password)
	for i := range creds {
		if creds[i].SHA256 == h {
			return &creds[i]
		}
	}
	return nil
}

// PlanRobot computes a robot's entry in the robots file and the passwords of its Secret at
// now, from what they hold (current may be nil, pw empty), and when to look again:
//   - the Secret is where the password lives: when its password matches no credential (the
//     Secret was deleted or edited), every credential is revoked and a new one issued;
//   - a credential is rotated at two thirds of its lifetime: the new hash is published at
//     once, the new password moves from pending to current RobotPublishLead later, and the
//     old credential stays valid until it expires;
//   - expiresAt ends the robot: credentials expire by then and none is issued after it;
//   - expired credentials are dropped RobotExpiredKept after they expire.
func PlanRobot(now time.Time, spec v1alpha1.RobotAccount, current *registryconfig.Robot, pw RobotPasswords,
	newPassword func() (string, error)) (registryconfig.Robot, RobotPasswords, time.Time, error) {
	lifetime := spec.GetCredentialLifetime()
	var end time.Time
	if spec.ExpiresAt != nil {
		end = spec.ExpiresAt.UTC()
	}
	var creds []registryconfig.RobotToken
	if current != nil {
		for _, c := range current.Credentials {
			if !end.IsZero() && end.Before(c.ExpiresAt) {
				c.ExpiresAt = end // expiresAt set or moved earlier: it ends every credential
			}
			if now.Before(c.ExpiresAt.Add(RobotExpiredKept)) {
				creds = append(creds, c)
			}
		}
	}
	if credentialFor(creds, pw.Current) == nil {
		creds, pw = nil, RobotPasswords{}
	}
	if pw.Pending != "" && credentialFor(creds, pw.Pending) == nil {
		pw.Pending = ""
	}
	if pc := credentialFor(creds, pw.Pending); pc != nil && !now.Before(pc.CreatedAt.Add(RobotPublishLead)) {
		pw = RobotPasswords{Current: pw.Pending}
	}
	issue := func() (string, error) {
		p, err := newPassword()
		if err != nil {
			return "", err
		}
		exp := now.Add(lifetime)
		if !end.IsZero() && end.Before(exp) {
			exp = end
		}
		creds = append(creds, registryconfig.RobotToken{SHA256: passwordHash(p), CreatedAt: now.UTC().Truncate(time.Second),
			ExpiresAt: exp.UTC().Truncate(time.Second)})
		return p, nil
	}
	alive := end.IsZero() || now.Before(end)
	newest := func() *registryconfig.RobotToken {
		var n *registryconfig.RobotToken
		for i := range creds {
			if n == nil || creds[i].CreatedAt.After(n.CreatedAt) {
				n = &creds[i]
			}
		}
		return n
	}
	rotateAt := func(c *registryconfig.RobotToken) time.Time { return c.CreatedAt.Add(lifetime * 2 / 3) }
	switch n := newest(); {
	case !alive:
	case pw.Current == "":
		p, err := issue()
		if err != nil {
			return registryconfig.Robot{}, RobotPasswords{}, time.Time{}, err
		}
		pw.Current = p
	case pw.Pending == "" && !now.Before(rotateAt(n)) && (end.IsZero() || n.ExpiresAt.Before(end)):
		p, err := issue()
		if err != nil {
			return registryconfig.Robot{}, RobotPasswords{}, time.Time{}, err
		}
		pw.Pending = p
	}
	sort.Slice(creds, func(i, j int) bool { return creds[i].CreatedAt.Before(creds[j].CreatedAt) })
	var next time.Time
	later := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if n := newest(); n != nil && alive {
		later(rotateAt(n))
	}
	if pc := credentialFor(creds, pw.Pending); pc != nil {
		later(pc.CreatedAt.Add(RobotPublishLead))
	}
	for _, c := range creds {
		later(c.ExpiresAt)
		later(c.ExpiresAt.Add(RobotExpiredKept))
	}
	return registryconfig.Robot{User: v1alpha1.RobotUser(spec.Name), Repositories: append([]string(nil), spec.Repositories...),
		Role: registryconfig.Role(spec.Role), Credentials: creds}, pw, next, nil
}

// RobotsSecret holds the robots file the registry pods mount: hashes only.
func RobotsSecret(reg *v1alpha1.Registry, robots []registryconfig.Robot) (*corev1.Secret, error) {
	if robots == nil {
		robots = []registryconfig.Robot{}
	}
	data, err := json.Marshal(registryconfig.Robots{Robots: robots})
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: objectMeta(reg, reg.RobotsSecretName(), ComponentServer),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{registryconfig.RobotsKey: data},
	}, nil
}

// RobotSecret is a robot's credentials: a kubernetes.io/dockerconfigjson Secret usable as
// an imagePullSecret, with username, password and registry keys for CI systems, and the
// next password during a rotation.
func RobotSecret(reg *v1alpha1.Registry, name string, pw RobotPasswords, clusterDomain string) (*corev1.Secret, error) {
	user := v1alpha1.RobotUser(name)
	hosts := reg.RegistryHosts(clusterDomain)
	auths := map[string]any{}
	for _, h := range hosts {
		auths[h] = map[string]string{"username": user, "password": pw.Current,
			"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pw.Current))}
	}
	cfg, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, err
	}
	meta := objectMeta(reg, reg.RobotSecretName(name), ComponentServer)
	meta.Labels[LabelRobot] = name
	s := &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: meta,
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{
			corev1.DockerConfigJsonKey:      cfg,
			registryconfig.RobotUsernameKey: []byte(user),
			registryconfig.RobotPasswordKey: []byte(pw.Current),
			registryconfig.RobotRegistryKey: []byte(hosts[0]),
		},
	}
	if pw.Pending != "" {
		s.Data[registryconfig.RobotPendingPasswordKey] = []byte(pw.Pending)
	}
	return s, nil
}
