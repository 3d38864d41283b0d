"""Bring a user's collection into the store: layouts say where images and masks are; the importer checks,
copies by content hash and records them with their seed masks."""
