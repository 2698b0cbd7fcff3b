package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// BackupSpec schedules backups of the Registry's images into a backup store: a job copies
// every repository, tag, manifest, blob and referrer (signatures, SBOMs) while the registry
// keeps serving. Blobs are stored once per store, so each backup copies only what is new;
// the newest `keep` backups are kept. status.lastBackup reports the last run.
type BackupSpec struct {
	// schedule in cron format (five fields or @daily, @weekly, ...), as garbageCollection.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4}$')",message="backup.schedule: use five cron fields (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\") or @yearly, @monthly, @weekly, @daily or @hourly"
	// +required
	Schedule string `json:"schedule"`

	// suspend stops scheduling new backups; a running one finishes.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// keep is how many backups the store keeps, the newest. Defaults to 7.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Keep *int32 `json:"keep,omitempty"`

	// destination is the backup store.
	// +required
	Destination BackupLocation `json:"destination"`
}

// BackupLocation is a backup store: exactly one of s3 or volume. Use a store of its own
// per Registry (or a rootDirectory of its own in a shared bucket).
//
// +kubebuilder:validation:XValidation:rule="[has(self.s3), has(self.volume)].filter(x, x).size() == 1",message="set exactly one of s3 or volume"
type BackupLocation struct {
	// s3 is a bucket of S3 or an S3-compatible store (rootDirectory is the prefix; use a
	// bucket or prefix other than the Registry's own storage).
	// +optional
	S3 *S3Storage `json:"s3,omitempty"`

	// volume is an existing PersistentVolumeClaim (e.g. NFS) in the Registry's namespace,
	// mounted by the backup and restore jobs.
	// +optional
	Volume *BackupVolume `json:"volume,omitempty"`
}

// BackupVolume names a PersistentVolumeClaim.
type BackupVolume struct {
	// claimName is the PersistentVolumeClaim's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	ClaimName string `json:"claimName"`
}

// RestoreSpec fills a new Registry from a backup before its pods start: a job writes the
// backup into the Registry's storage (same repositories, tags and digests), then the
// registry starts serving. It can be set only when the Registry is created.
type RestoreSpec struct {
	// from is the backup store.
	// +required
	From BackupLocation `json:"from"`

	// backup names the backup (a name from status.lastBackup of the Registry that wrote it).
	// Empty means the newest backup in the store.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	Backup string `json:"backup,omitempty"`
}

// BackupRun describes a backup or restore run.
type BackupRun struct {
	// backup is the backup's name in the store.
	// +optional
	Backup string `json:"backup,omitempty"`
	// jobName is the Job that ran.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// completionTime is when the run finished.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// result is Succeeded or Failed.
	// +optional
	Result string `json:"result,omitempty"`
	// repositories, tags and manifests the backup holds.
	// +optional
	Repositories int32 `json:"repositories,omitempty"`
	// +optional
	Tags int32 `json:"tags,omitempty"`
	// +optional
	Manifests int32 `json:"manifests,omitempty"`
	// bytes is the size of every blob of the backup; bytesCopied what this run copied.
	// +optional
	Bytes int64 `json:"bytes,omitempty"`
	// +optional
	BytesCopied int64 `json:"bytesCopied,omitempty"`
	// durationSeconds is the run's wall time.
	// +optional
	DurationSeconds int64 `json:"durationSeconds,omitempty"`
	// message explains a failure.
	// +optional
	Message string `json:"message,omitempty"`
}
