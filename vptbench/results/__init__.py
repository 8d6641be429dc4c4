"""What a run leaves on disk, and reading it back: typed records and manifests, atomic strict-JSON
I/O, the run lock, run directories, combining them, and provenance. No sentence for users here
beyond errors: reports and the CLI word the rest."""
