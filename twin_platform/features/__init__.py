"""The feature pipeline: raw warehouse documents → cleaned documents → chunks → embedded chunks."""
