//! The MIT Kerberos backend: the afs principal in a real KDC database, driven through
//! `kadmin.local`. (Being written.)
