import CheckpointFormats

/// Placeholder until the conversion engine lands.
public enum CheckpointConversion {}
