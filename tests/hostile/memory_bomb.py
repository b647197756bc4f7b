# Memory bomb in Python: keeps appending 16 MiB byte arrays (filled, so
# every page is touched) to a list that is never freed.
#
# Must get: `memory-limit`, the container usable afterwards.
hog = []
while True:
    hog.append(bytearray(b"\x5a") * (16 << 20))
