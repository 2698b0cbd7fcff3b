package v1alpha1

// Condition types of a Registry. Ready is the summary that `kubectl wait
// --for=condition=Ready` and GitOps tools read; the others say which part needs attention.
const (
	// ConditionReady is True when every pod runs the current spec and every dependency
	// (storage, certificate, users) is in place.
	ConditionReady = "Ready"
	// ConditionProgressing is True while the operator waits for a change to roll out.
	ConditionProgressing = "Progressing"
	// ConditionMonitoringReady says whether Prometheus is told to scrape the Registry (a
	// PodMonitor); not part of Ready.
	ConditionMonitoringReady = "MonitoringReady"
	// ConditionDegraded is True when something that used to work is failing: pods cannot
	// become available, or the last garbage collection failed.
	ConditionDegraded = "Degraded"
	// ConditionStorageReady reports the storage backend: the volume claim is bound, or the
	// object-storage credentials Secret exists with the expected keys.
	ConditionStorageReady = "StorageReady"
	// ConditionCertificateReady reports the serving certificate (only when spec.tls is set).
	ConditionCertificateReady = "CertificateReady"
	// ConditionAuthReady reports the identity providers (only when spec.auth is set): the
	// users Secret, the LDAP bind Secret, CA and directory, the OIDC CA and provider.
	ConditionAuthReady = "AuthReady"
	// ConditionNodeTrustReady reports the node-trust DaemonSet (only when spec.nodeTrust is
	// set): every node it selects runs the current pod, which installed the CA. It is not
	// part of Ready.
	ConditionNodeTrustReady = "NodeTrustReady"
	// ConditionScannerReady reports the vulnerability scanner (only when spec.scanning is
	// set): its pod is available, has a vulnerability database, and the database is not
	// older than spec.scanning.database.maxAge.
	ConditionScannerReady = "ScannerReady"
)

// Condition reasons. They are CamelCase, stable, and safe to match in automation.
const (
	// ReasonAvailable (Ready=True): every replica of the current spec is available.
	ReasonAvailable = "Available"
	// ReasonScaledToZero (Ready=True): spec.replicas is 0; data is kept.
	ReasonScaledToZero = "ScaledToZero"
	// ReasonRollingOut (Ready=False, Progressing=True): pods of the current spec are
	// starting or old pods are terminating.
	ReasonRollingOut = "RollingOut"
	// ReasonDependenciesNotReady (Ready=False): a per-dependency condition is not True.
	ReasonDependenciesNotReady = "DependenciesNotReady"
	// ReasonReconcileFailed (Ready=False or Degraded=True): the operator could not apply the
	// child objects; the message carries the API error.
	ReasonReconcileFailed = "ReconcileFailed"
	// ReasonNotObserved (Unknown): the last reconcile failed before it could observe what
	// this condition reports (e.g. the API server refused a read); the message names the
	// failed step and the last observed state. Status fields that step feeds (replicas,
	// lastGarbageCollection) keep their previous values meanwhile.
	ReasonNotObserved = "NotObserved"
	// ReasonAsExpected (Progressing=False, Degraded=False): nothing to report.
	ReasonAsExpected = "AsExpected"
	// ReasonDeploymentUnavailable (Degraded=True): the Deployment reports its progress
	// deadline exceeded or a replica failure.
	ReasonDeploymentUnavailable = "DeploymentUnavailable"
	// ReasonGarbageCollectionFailed (Degraded=True): the last garbage-collection job failed.
	ReasonGarbageCollectionFailed = "GarbageCollectionFailed"

	// ReasonSecretNotFound: a referenced Secret does not exist in the Registry's namespace.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretKeyMissing: a referenced Secret lacks a required key or it is empty.
	ReasonSecretKeyMissing = "SecretKeyMissing"
	// ReasonSecretFound: the referenced Secret exists with the expected keys.
	ReasonSecretFound = "SecretFound"

	// ReasonConfigMapNotFound: a referenced ConfigMap does not exist in the Registry's
	// namespace.
	ReasonConfigMapNotFound = "ConfigMapNotFound"
	// ReasonConfigMapKeyMissing: a referenced ConfigMap lacks a required key or it is empty.
	ReasonConfigMapKeyMissing = "ConfigMapKeyMissing"
	// ReasonConfigMapFound: the referenced ConfigMap exists with the expected key.
	ReasonConfigMapFound = "ConfigMapFound"

	// ReasonProvidersReady (AuthReady=True): every configured identity provider is ready:
	// its Secrets exist and, for LDAP, the operator bound to the directory with the service
	// account within the last five minutes.
	ReasonProvidersReady = "ProvidersReady"
	// ReasonLDAPUnreachable (AuthReady=False): no LDAP URL answered (connection, TLS or
	// certificate error); the message carries the error. The operator checks from its own
	// pod, every 30 seconds while failing. Other providers keep working.
	ReasonLDAPUnreachable = "LDAPUnreachable"
	// ReasonOIDCDiscoveryFailed (AuthReady=False): the operator could not read the OIDC
	// provider's discovery document or key set (unreachable, untrusted certificate, issuer
	// mismatch); the message carries the error. Checked like LDAP.
	ReasonOIDCDiscoveryFailed = "OIDCDiscoveryFailed"
	// ReasonAuthDelegationNotAllowed (AuthReady=False): auth.serviceAccounts or
	// auth.kubernetesRBAC is set but the Registry's namespace lacks the label
	// registry.dockyard.dev/allow-auth-delegation=true a cluster administrator sets.
	ReasonAuthDelegationNotAllowed = "AuthDelegationNotAllowed"
	// ReasonLDAPBindFailed (AuthReady=False): the directory answered but refused the
	// service account (wrong bindDN or password).
	ReasonLDAPBindFailed = "LDAPBindFailed"

	// ReasonNodeTrustInstalled (NodeTrustReady=True): every selected node runs the current
	// node-trust pod.
	ReasonNodeTrustInstalled = "NodeTrustInstalled"
	// ReasonNodeTrustRollingOut (NodeTrustReady=False): some nodes do not run the current
	// node-trust pod yet (or it cannot be created: see the message).
	ReasonNodeTrustRollingOut = "NodeTrustRollingOut"

	// ReasonScannerAvailable (ScannerReady=True): the scanner runs and its database is fresh.
	ReasonScannerAvailable = "ScannerAvailable"
	// ReasonScannerUnavailable (ScannerReady=False): the scanner's pod is not available
	// (starting, pulling its image, or failing; kubectl describe pod says why).
	ReasonScannerUnavailable = "ScannerUnavailable"
	// ReasonScannerUnreachable (ScannerReady=False): the pod runs but the operator cannot
	// read its status.
	ReasonScannerUnreachable = "ScannerUnreachable"
	// ReasonDatabaseMissing (ScannerReady=False): the scanner has no vulnerability
	// database yet: it could not download one from spec.scanning.database.repository
	// (status.scanning.lastError says why). Nothing is scanned until it has one.
	ReasonDatabaseMissing = "DatabaseMissing"
	// ReasonDatabaseStale (ScannerReady=False): the database is older than
	// spec.scanning.database.maxAge; scans go on, but miss what was published since.
	ReasonDatabaseStale = "DatabaseStale"

	// ReasonVolumeBound (StorageReady=True): the PersistentVolumeClaim is bound.
	ReasonVolumeBound = "VolumeBound"
	// ReasonVolumePending (StorageReady=False): the claim waits for a volume.
	ReasonVolumePending = "VolumePending"
	// ReasonVolumeLost (StorageReady=False): the claim's volume is gone.
	ReasonVolumeLost = "VolumeLost"
	// ReasonEphemeralStorage (StorageReady=True): emptyDir; data is lost with the pod.
	ReasonEphemeralStorage = "EphemeralStorage"
	// ReasonAmbientCredentials (StorageReady=True): object storage without a credentials
	// Secret; the pod's ambient identity is used.
	ReasonAmbientCredentials = "AmbientCredentials"

	// ReasonCertificateIssued (CertificateReady=True): cert-manager reports the certificate
	// Ready and its Secret exists.
	ReasonCertificateIssued = "CertificateIssued"
	// ReasonCertificateNotReady (CertificateReady=False): cert-manager has not issued it
	// yet; the message repeats cert-manager's.
	ReasonCertificateNotReady = "CertificateNotReady"
	// ReasonIssuerNotFound (CertificateReady=False): issuerRef names no Issuer/ClusterIssuer.
	ReasonIssuerNotFound = "IssuerNotFound"
	// ReasonIssuerNotReady (CertificateReady=False): the issuer exists but is not Ready.
	ReasonIssuerNotReady = "IssuerNotReady"
	// ReasonCertManagerMissing (CertificateReady=False): issuerRef is set but cert-manager's
	// CRDs are not installed in the cluster.
	ReasonCertManagerMissing = "CertManagerNotInstalled"
)

// Condition reasons of a RetentionPolicy. Ready says whether the policy has a current plan
// (and, after an enforced run, what it did); Degraded says the last run failed or stopped
// at the safety ceiling. ReasonReconcileFailed and ReasonAsExpected apply too.
const (
	// ReasonPlanned (Ready=True): the last run made a plan for the current spec; the
	// message gives its size. DryRun policies stay here.
	ReasonPlanned = "Planned"
	// ReasonEnforced (Ready=True): the last enforced run carried out its plan; the message
	// says what it deleted.
	ReasonEnforced = "Enforced"
	// ReasonCeilingExceeded (Ready=True, Degraded=True): the last enforced run's plan
	// deleted more than safety.maxDeletionPercent of the artifacts in scope, so it deleted
	// nothing. The plan stays in status: fix the rules or raise the ceiling.
	ReasonCeilingExceeded = "CeilingExceeded"
	// ReasonPartiallyFailed (Degraded=True): the storage refused some deletions; the next
	// run retries them. status.lastEnforcement.errors has the first few.
	ReasonPartiallyFailed = "PartiallyFailed"
	// ReasonRunFailed (Degraded=True; Ready=False when there is no plan for the current
	// spec): the last run could not read the registry or plan; the message has its error.
	// A plan for a new spec is retried after five minutes.
	ReasonRunFailed = "RunFailed"
	// ReasonRunning (Ready=False): the first run for the current spec is in progress.
	ReasonRunning = "Running"
	// ReasonRegistryNotFound (Ready=False): spec.registryRef names no Registry in the
	// namespace.
	ReasonRegistryNotFound = "RegistryNotFound"
	// ReasonRegistryNotReady (Ready=False): the Registry is not Ready; runs wait for it.
	ReasonRegistryNotReady = "RegistryNotReady"
	// ReasonStorageNotShared (Ready=False): the Registry's storage is an emptyDir, which a
	// run Job cannot see.
	ReasonStorageNotShared = "StorageNotShared"
	// ReasonInvalidSpec (Ready=False): the spec passed admission but cannot be used (e.g.
	// an object stored before a validation rule existed).
	ReasonInvalidSpec = "InvalidSpec"
)

// Condition reasons of a ReplicationRule. Ready says whether the last run left the
// destination with everything the filters matched; Degraded names what failed;
// Progressing is True while a run is in progress. ReasonRegistryNotFound,
// ReasonRegistryNotReady, ReasonReconcileFailed and ReasonAsExpected apply too.
const (
	// ReasonSynced (Ready=True): the last run copied everything the filters matched; the
	// message gives the counts.
	ReasonSynced = "Synced"
	// ReasonNothingMatched (Ready=True): the filters matched no repository or tag at the
	// source. Check filters.repositories against the source's names.
	ReasonNothingMatched = "NothingMatched"
	// ReasonSyncing (Progressing=True; Ready=False before the first run of a spec): a run
	// is in progress.
	ReasonSyncing = "Syncing"
	// ReasonRemoteUnreachable (Ready=False, Degraded=True): the remote did not answer
	// (DNS, connection refused, timeout, 5xx).
	ReasonRemoteUnreachable = "RemoteUnreachable"
	// ReasonAuthenticationFailed (Ready=False, Degraded=True): a registry refused the
	// credentials (401).
	ReasonAuthenticationFailed = "AuthenticationFailed"
	// ReasonTLSUntrusted (Ready=False, Degraded=True): the remote's certificate is not
	// signed by caBundle (or the system roots), or does not name the host.
	ReasonTLSUntrusted = "TLSUntrusted"
	// ReasonPermissionDenied (Ready=False, Degraded=True): a registry refused an action
	// (403, DENIED) or a quota (TOOMANYREQUESTS, 429).
	ReasonPermissionDenied = "PermissionDenied"
	// ReasonCredentialsNotFound (Ready=False): credentialsSecretRef or caBundle names a
	// Secret or ConfigMap (or key) that does not exist, or a Secret without usable
	// credentials for the remote.
	ReasonCredentialsNotFound = "CredentialsNotFound"
	// ReasonSyncFailed (Ready=False, Degraded=True): the last run failed for another
	// reason; the message has the first error.
	ReasonSyncFailed = "SyncFailed"
	// ReasonSuspended (Ready keeps its value; Progressing=False): spec.suspend is set.
	ReasonSuspended = "Suspended"
)

// Condition reasons of MonitoringReady.
const (
	// ReasonPodMonitorApplied (MonitoringReady=True): the PodMonitor is in place (and the
	// PrometheusRule with the alerts, unless spec.monitoring.alerts.disabled is set).
	ReasonPodMonitorApplied = "PodMonitorApplied"
	// ReasonRestoring (Ready=False): the restore Job of spec.restore is running; the
	// registry's pods start when it succeeds.
	ReasonRestoring = "Restoring"
	// ReasonRestoreFailed (Ready=False): the restore Job failed; the pods do not start on a
	// partial restore.
	ReasonRestoreFailed = "RestoreFailed"
	// ReasonPrometheusOperatorMissing (MonitoringReady=False): the Prometheus Operator's
	// CRDs are not installed; the pods still serve /metrics on port 5001. Restart the
	// operator after installing them.
	ReasonPrometheusOperatorMissing = "PrometheusOperatorNotInstalled"
	// ReasonMonitoringDisabled (MonitoringReady=False): spec.monitoring.disabled is set.
	ReasonMonitoringDisabled = "MonitoringDisabled"
)
