"""What the ``banned`` engine (tasks/plugins/banned.py) looks at in a message:

inspection.py  the attachments of a message, archives opened within bounds
names.py       the file name rules (banned, double and class id extensions)
archives.py    zip, tar, gzip, bzip2, xz, 7z and rar seen as their members
"""
