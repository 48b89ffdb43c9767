//! CKA, ECE, k-NN and fits (issue 4).
