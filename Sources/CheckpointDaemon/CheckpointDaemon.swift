import CInotifyTools
import CheckpointFormats

/// Placeholder until the daemon lands.
public enum CheckpointDaemon {}
