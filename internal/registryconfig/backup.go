package registryconfig

import (
	"errors"
	"fmt"
)

// Backup configures `dockyard registry backup`: where backups go and how many are kept.
type Backup struct {
	// Store is the backup store: an S3 bucket (with a prefix) or a filesystem directory (a
	// mounted volume). Credentials come from the environment variables the store names.
	Store Storage `json:"store"`
	// Keep is how many backups the store keeps (the newest); 0 keeps all.
	Keep int `json:"keep,omitempty"`
	// Name prefixes each backup's name, which ends in its UTC start time
	// (<name>-20261202T030000Z); usually the Registry's name.
	Name string `json:"name"`
	// Registry (namespace/name) is recorded in each backup, for people.
	Registry string `json:"registry,omitempty"`
}

// Restore configures `dockyard registry restore`: which backup fills the storage.
type Restore struct {
	Store Storage `json:"store"`
	// Backup names the backup; empty means the newest in the store.
	Backup string `json:"backup,omitempty"`
}

// Where the backup and restore jobs find their store's credentials and volume.
const (
	// BackupVolumeDir is where a volume backup store is mounted.
	BackupVolumeDir = "/var/lib/dockyard-backup"
	// EnvBackupS3AccessKeyID and EnvBackupS3SecretAccessKey carry an S3 store's static
	// credentials (keys S3AccessKeyIDKey and S3SecretAccessKeyKey of its Secret).
	EnvBackupS3AccessKeyID     = "DOCKYARD_BACKUP_S3_ACCESS_KEY_ID"
	EnvBackupS3SecretAccessKey = "DOCKYARD_BACKUP_S3_SECRET_ACCESS_KEY"
)

// BackupArgs returns the container args of one backup run; it writes a BackupSummary to
// summaryPath.
func BackupArgs(configPath, summaryPath string) []string {
	return []string{"registry", "backup", "--config", configPath, "--summary-file", summaryPath}
}

// RestoreArgs returns the container args of the restore run; it writes a BackupSummary to
// summaryPath.
func RestoreArgs(configPath, summaryPath string) []string {
	return []string{"registry", "restore", "--config", configPath, "--summary-file", summaryPath}
}

// BackupSummary is what one backup or restore run reports, as JSON, in its summary file.
type BackupSummary struct {
	// Result is "Succeeded" or "Failed".
	Result string `json:"result"`
	// Backup is the backup written or restored.
	Backup       string `json:"backup,omitempty"`
	Repositories int    `json:"repositories"`
	Tags         int    `json:"tags"`
	Manifests    int    `json:"manifests"`
	Blobs        int    `json:"blobs"`
	// Bytes is the size of the backup's blobs; BytesCopied what this run copied.
	Bytes       int64 `json:"bytes"`
	BytesCopied int64 `json:"bytesCopied"`
	// Skipped counts manifests deleted while the backup ran, left out of it.
	Skipped int `json:"skipped,omitempty"`
	// Pruned counts older backups deleted to keep Keep.
	Pruned          int     `json:"pruned,omitempty"`
	DurationSeconds float64 `json:"durationSeconds"`
	Message         string  `json:"message,omitempty"`
}

func validateStore(field string, s Storage) error {
	n := 0
	if s.Filesystem != nil {
		n++
		if s.Filesystem.RootDirectory == "" {
			return fmt.Errorf("%s.filesystem.rootDirectory: required", field)
		}
	}
	if s.S3 != nil {
		n++
		if s.S3.Bucket == "" || s.S3.Region == "" {
			return fmt.Errorf("%s.s3: bucket and region are required", field)
		}
	}
	if s.GCS != nil || s.Azure != nil || s.InMemory != nil {
		return fmt.Errorf("%s: a backup store is s3 or filesystem", field)
	}
	if n != 1 {
		return errors.New(field + ": exactly one of s3 or filesystem is required")
	}
	return nil
}
