"""Local fakes of the vendor clouds, for the tests and the main job's demo. They are NOT the
vendors' services: each is written from the vendor's published API description and imitates
its awkward parts too (errors, 429s, single-use codes, webhook handshakes)."""
