"""Knowledge: documents parsed, chunked and indexed, and searched for Japanese and English alike."""
