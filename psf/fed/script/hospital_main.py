"""The job's client script (NVFlare copies it into each hospital's app): psf's hospital loop."""

from psf.fed.hospital import main

main()
