-- Written by hand: no eventgen header, so diff and generate leave it alone.
CREATE INDEX pings_seq ON pings (seq);
