module github.com/ktls-go/ktls

go 1.26
