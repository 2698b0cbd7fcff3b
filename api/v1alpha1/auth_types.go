package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuthSpec is authentication and role-based access.
//
// Identity providers answer "who is this, in which groups"; the access rules decide what
// that identity may do, whichever provider vouched for it. A user name and password are
// checked by the providers in this order: htpasswd users (usersSecretRef), then LDAP. The
// first provider that knows the name decides; a provider that is down fails only the
// logins it would have decided, never the others.
// +kubebuilder:validation:XValidation:rule="has(self.usersSecretRef) || has(self.ldap) || has(self.oidc) || (has(self.robots) && size(self.robots) > 0) || has(self.serviceAccounts)",message="auth needs at least one identity provider: usersSecretRef, ldap, oidc, robots or serviceAccounts"
type AuthSpec struct {
	// usersSecretRef names a Secret in the Registry's namespace with users in htpasswd
	// format (bcrypt hashes, as `htpasswd -nbB user password` prints) under the key
	// htpasswd, and optionally groups under the key groups, one per line as
	// `team-a: alice, bob`. Changes are picked up by running pods.
	// +optional
	UsersSecretRef *SecretReference `json:"usersSecretRef,omitempty"`

	// ldap authenticates users against an LDAP directory or Active Directory; its groups
	// are subjects of kind Group in the access rules.
	// +optional
	LDAP *LDAPSpec `json:"ldap,omitempty"`

	// oidc accepts ID tokens of an OpenID Connect provider (Keycloak, Dex, Entra ID, Okta,
	// Google, GitLab and GitHub Actions, Kubernetes service account issuers) as passwords
	// and Bearer tokens; with loginClientID, people log in with `dockyard login REGISTRY`.
	// +optional
	OIDC *OIDCSpec `json:"oidc,omitempty"`

	// robots are machine accounts for CI/CD, each with its own role on its own
	// repositories. For each, the operator generates a random password and writes the
	// Secret <registry>-robot-<name> (type kubernetes.io/dockerconfigjson, ready as an
	// imagePullSecret, with username, password and registry keys for CI systems); the
	// user name is robot+<name>. The password is rotated at two thirds of
	// credentialLifetime (the previous one stays valid until it expires), and revoked when
	// the robot leaves this list or its Secret is deleted (then a new one is issued).
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +optional
	Robots []RobotAccount `json:"robots,omitempty"`

	// serviceAccounts accepts Kubernetes ServiceAccount tokens as passwords and Bearer
	// tokens (see ServiceAccountAuthSpec).
	// +optional
	ServiceAccounts *ServiceAccountAuthSpec `json:"serviceAccounts,omitempty"`

	// kubernetesRBAC authorizes requests with Kubernetes RBAC too: RoleBindings to the
	// ClusterRoles dockyard-repository-viewer and dockyard-repository-manager grant pull,
	// push and delete on <namespace>/** (see KubernetesRBACSpec). Set it to {} to turn it on.
	// +optional
	KubernetesRBAC *KubernetesRBACSpec `json:"kubernetesRBAC,omitempty"`

	// tokens configures the registry token service (the Docker registry token protocol).
	// It is always on when auth is set: clients exchange their credentials once at
	// /auth/token for a short-lived token signed with a key the operator generates and
	// rotates (Secret <name>-token-keys), so a directory is asked once per token, not once
	// per request. Clients that send Basic credentials directly keep working.
	// +optional
	Tokens *TokenSpec `json:"tokens,omitempty"`

	// anonymousPull lets clients without credentials pull every repository.
	// +optional
	AnonymousPull bool `json:"anonymousPull,omitempty"`

	// access grants roles on repositories to users and groups. A request is allowed when
	// any rule allows it. When empty, every htpasswd user (usersSecretRef) is a Manager of
	// every repository; LDAP and OIDC users, whom a whole directory or identity provider
	// vouches for, get only what rules grant, and robots what their own role grants.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Access []AccessRule `json:"access,omitempty"`
}

// OIDCSpec is an OpenID Connect identity provider. An ID token is accepted when its
// signature verifies against the provider's published keys (discovered from the issuer and
// refetched when it rotates them), its issuer is issuerURL, its audience one of audiences,
// it has not expired, and requiredClaims hold.
type OIDCSpec struct {
	// issuerURL is the provider's issuer, an https URL; discovery reads
	// issuerURL/.well-known/openid-configuration.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^https://[^\s?#]+$`
	// +required
	IssuerURL string `json:"issuerURL"`

	// audiences are the accepted aud values (usually client IDs); a token must name one.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	// +required
	Audiences []string `json:"audiences"`

	// usernameClaim holds the user name access rules see. Default sub; with email, a token
	// whose email_verified is false is refused.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.:/-]+$`
	// +optional
	UsernameClaim string `json:"usernameClaim,omitempty"`

	// usernamePrefix is prepended to the user name (e.g. oidc-), so OIDC names cannot be
	// mistaken for htpasswd or LDAP names in access rules.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[^:\s]*$`
	// +optional
	UsernamePrefix string `json:"usernamePrefix,omitempty"`

	// groupsClaim holds the groups, a list of strings or one string. Default groups.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.:/-]+$`
	// +optional
	GroupsClaim string `json:"groupsClaim,omitempty"`

	// groupsPrefix is prepended to every group name.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[^:\s]*$`
	// +optional
	GroupsPrefix string `json:"groupsPrefix,omitempty"`

	// requiredClaims must all be present in a token with exactly these string values, e.g.
	// {hd: example.com} for Google, {repository_owner: my-org} for GitHub Actions.
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	RequiredClaims map[string]string `json:"requiredClaims,omitempty"`

	// ca is the PEM bundle of CAs that signed the provider's certificate; the system roots
	// when unset.
	// +optional
	CA *CABundleSource `json:"ca,omitempty"`

	// loginClientID is a public client (no secret) of the provider, with the device flow
	// allowed, that `dockyard login REGISTRY` uses. Unset turns `dockyard login` off; ID
	// tokens are accepted either way.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	LoginClientID string `json:"loginClientID,omitempty"`
}

// RobotAccount is a machine identity of the Registry.
type RobotAccount struct {
	// name of the robot: its user name is robot+<name>, its Secret <registry>-robot-<name>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// repositories the robot's role applies to (the access rules' pattern grammar). Access
	// rules naming the user robot+<name> grant more; the rules' "everyone is a Manager
	// when access is empty" does not apply to robots.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$'))",message="repositories: each pattern is lowercase path segments separated by '/', with '*' inside a segment or '**' as a whole segment (e.g. team-a/**, base/debian-*); no leading, trailing or double '/'"
	// +listType=atomic
	// +required
	Repositories []string `json:"repositories"`

	// role is Manager (pull, push, delete) or Viewer (pull).
	// +kubebuilder:validation:Enum=Manager;Viewer
	// +required
	Role Role `json:"role"`

	// credentialLifetime is how long each generated password is valid, from 1h to 8760h;
	// a new one is issued at two thirds of it. Default 720h (30 days).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('8760h')",message="credentialLifetime must be between 1h and 8760h"
	// +optional
	CredentialLifetime *metav1.Duration `json:"credentialLifetime,omitempty"`

	// expiresAt ends the robot: from then on it cannot log in and is no longer rotated.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// TokenChallenge is the scheme of the registry's 401 answers.
// +kubebuilder:validation:Enum=Bearer;Basic
type TokenChallenge string

const (
	// TokenChallengeBearer sends clients to the token endpoint (what Docker Hub, GHCR and
	// Harbor do).
	TokenChallengeBearer TokenChallenge = "Bearer"
	// TokenChallengeBasic asks clients for Basic credentials on every request; the token
	// endpoint still answers clients that go to it.
	TokenChallengeBasic TokenChallenge = "Basic"
)

// TokenSpec configures the token service.
type TokenSpec struct {
	// challenge is the scheme of 401 answers: Bearer (default) or Basic.
	// +kubebuilder:default=Bearer
	// +optional
	Challenge TokenChallenge `json:"challenge,omitempty"`

	// ttl is how long an issued token is valid, from 1m to 1h. Default 5m. A rule removed
	// from access takes effect at once (rules are re-checked on every request); a user
	// removed from a provider can use a token already issued until it expires.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('1h')",message="ttl must be between 1m and 1h"
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// keyRotationInterval is how often the operator replaces the signing key, at least 2h.
	// Default 720h (30 days). A new key is published 10 minutes before replicas sign with
	// it, and the previous key is kept until every token it signed has expired, so
	// rotation never fails a request.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('2h')",message="keyRotationInterval must be at least 2h"
	// +optional
	KeyRotationInterval *metav1.Duration `json:"keyRotationInterval,omitempty"`

	// sessionTTL is how long a refresh token stays valid, from 1h to 168h (7 days).
	// Default 12h. An OIDC login that asks for one (docker login's offline_token, `dockyard
	// login`) gets a refresh token, which clients store as their identity token instead of
	// the ID token (valid minutes): a person logs in once per session. Signing keys are kept
	// this long after they are replaced, so sessions survive rotations.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('168h')",message="sessionTTL must be between 1h and 168h"
	// +optional
	SessionTTL *metav1.Duration `json:"sessionTTL,omitempty"`
}

// LDAPSpec is an LDAP / Active Directory identity provider. A login binds as the service
// account, finds the user with userSearch (the login name is escaped), binds as the user
// with the given password, then reads the user's groups. Passwords never cross the network
// unencrypted: URLs are ldaps://, or ldap:// with startTLS.
// +kubebuilder:validation:XValidation:rule="self.startTLS || self.urls.all(u, u.startsWith('ldaps://'))",message="ldap: plain ldap:// URLs need startTLS: true (passwords are never sent unencrypted)"
// +kubebuilder:validation:XValidation:rule="!has(self.groupSearch) || !has(self.groupsAttribute)",message="ldap: set groupSearch or groupsAttribute, not both"
type LDAPSpec struct {
	// urls of the directory servers, tried in order until one answers:
	// ldaps://host[:port] or ldap://host[:port] (with startTLS).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^ldaps?://[A-Za-z0-9._\[\]:-]+/?$`
	// +listType=atomic
	// +required
	URLs []string `json:"urls"`

	// startTLS upgrades ldap:// connections with StartTLS before anything is sent.
	// +optional
	StartTLS bool `json:"startTLS,omitempty"`

	// ca is the PEM bundle of CAs that signed the directory's certificate; the system
	// roots when unset.
	// +optional
	CA *CABundleSource `json:"ca,omitempty"`

	// bindDN is the service account that searches the directory, e.g.
	// cn=registry,ou=services,dc=example,dc=com. Anonymous binds are never used.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +required
	BindDN string `json:"bindDN"`

	// bindPasswordSecretRef is the key of a Secret holding the service account's password.
	// +required
	BindPasswordSecretRef SecretKeyReference `json:"bindPasswordSecretRef"`

	// userSearch finds the entry of a login name.
	// +required
	UserSearch LDAPUserSearch `json:"userSearch"`

	// groupSearch finds the user's groups by searching for group entries
	// (groupOfNames, Active Directory groups).
	// +optional
	GroupSearch *LDAPGroupSearch `json:"groupSearch,omitempty"`

	// groupsAttribute reads the user's groups from an attribute of the user's entry that
	// lists group DNs, e.g. memberOf; each group's name is the value of its DN's first RDN.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9-]*$`
	// +optional
	GroupsAttribute string `json:"groupsAttribute,omitempty"`

	// timeout bounds connecting and each operation, from 1s to 1m. Default 5s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1m')",message="timeout must be between 1s and 1m"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// cacheTTL is how long a successful login is remembered (per user name and password,
	// kept as an HMAC), up to 1h; 0s turns the cache off. Default 60s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="cacheTTL must be at most 1h"
	// +optional
	CacheTTL *metav1.Duration `json:"cacheTTL,omitempty"`

	// negativeCacheTTL is how long a failed login is remembered, up to 10m, so a client
	// retrying a wrong password does not lock the account in Active Directory; 0s turns it
	// off. Default 10s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('10m')",message="negativeCacheTTL must be at most 10m"
	// +optional
	NegativeCacheTTL *metav1.Duration `json:"negativeCacheTTL,omitempty"`
}

// LDAPUserSearch finds a user's entry.
type LDAPUserSearch struct {
	// baseDN under which users are searched (whole subtree).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +required
	BaseDN string `json:"baseDN"`

	// filter is an LDAP filter in which {username} stands for the login name, escaped.
	// Default (uid={username}); for Active Directory (sAMAccountName={username}).
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.contains('{username}') && self.startsWith('(') && self.endsWith(')')",message="filter must be a parenthesised LDAP filter containing {username}"
	// +optional
	Filter string `json:"filter,omitempty"`

	// usernameAttribute holds the user name that access rules and logs use. Default uid.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9-]*$`
	// +optional
	UsernameAttribute string `json:"usernameAttribute,omitempty"`
}

// LDAPGroupSearch finds the groups a user belongs to.
type LDAPGroupSearch struct {
	// baseDN under which groups are searched (whole subtree).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +required
	BaseDN string `json:"baseDN"`

	// filter is an LDAP filter in which {dn} stands for the user's DN and {username} for
	// the user name, both escaped. Default (member={dn}).
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="(self.contains('{dn}') || self.contains('{username}')) && self.startsWith('(') && self.endsWith(')')",message="filter must be a parenthesised LDAP filter containing {dn} or {username}"
	// +optional
	Filter string `json:"filter,omitempty"`

	// nameAttribute of a group entry is the group name in access rules. Default cn.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9-]*$`
	// +optional
	NameAttribute string `json:"nameAttribute,omitempty"`
}

// SecretKeyReference names a key of a Secret in the Registry's namespace.
type SecretKeyReference struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// key within the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +required
	Key string `json:"key"`
}

// CABundleSource is a PEM bundle from a Secret or a ConfigMap key (exactly one) in the
// Registry's namespace.
// +kubebuilder:validation:XValidation:rule="has(self.secretKeyRef) != has(self.configMapKeyRef)",message="set exactly one of secretKeyRef and configMapKeyRef"
type CABundleSource struct {
	// secretKeyRef is a Secret key holding the bundle.
	// +optional
	SecretKeyRef *SecretKeyReference `json:"secretKeyRef,omitempty"`

	// configMapKeyRef is a ConfigMap key holding the bundle.
	// +optional
	ConfigMapKeyRef *ConfigMapKeyReference `json:"configMapKeyRef,omitempty"`
}

// ConfigMapKeyReference names a key of a ConfigMap in the Registry's namespace.
type ConfigMapKeyReference struct {
	// name of the ConfigMap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// key within the ConfigMap.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +required
	Key string `json:"key"`
}

// AccessRule grants a role on repositories to subjects.
type AccessRule struct {
	// subjects receive the role.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +required
	Subjects []Subject `json:"subjects"`

	// repositories are patterns of repository names: '/'-separated lowercase segments,
	// where '*' inside a segment matches within that segment and a whole segment '**'
	// matches any depth. Examples: team-a/*, team-a/**, **, base-images/debian-*.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*(/[a-z0-9*]+(([.]|_|__|-+)[a-z0-9*]+)*)*$'))",message="repositories: each pattern is lowercase path segments separated by '/', with '*' inside a segment or '**' as a whole segment (e.g. team-a/**, base/debian-*); no leading, trailing or double '/'"
	// +listType=atomic
	// +required
	Repositories []string `json:"repositories"`

	// role is Manager (pull, push, delete) or Viewer (pull).
	// +kubebuilder:validation:Enum=Manager;Viewer
	// +required
	Role Role `json:"role"`
}

// Role is a set of registry actions.
type Role string

const (
	// RoleManager may pull, push and delete.
	RoleManager Role = "Manager"
	// RoleViewer may pull.
	RoleViewer Role = "Viewer"
)

// Subject is a user or a group, as an identity provider names it: an htpasswd user or a
// group of the users Secret's groups key, an LDAP user name (userSearch.usernameAttribute)
// or group name.
type Subject struct {
	// kind is User or Group.
	// +kubebuilder:validation:Enum=User;Group
	// +required
	Kind string `json:"kind"`

	// name of the user or group. Directory group names may hold inner spaces ("Domain
	// Users"); no name holds ':' or starts or ends with a space.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[^:\s]([^:\t\n\r]*[^:\s])?$`
	// +required
	Name string `json:"name"`
}
